"""OpenAPI paths of the Jupyter kernels API the gateway serves (for Jupyter Server's
gateway client and `jupyter console --existing`)."""

from __future__ import annotations

from typing import Any

from .schema import STR, body, err, path_param

__all__ = ["jupyter_paths"]


def jupyter_paths() -> dict[str, Any]:
    """/api, /api/kernelspecs[/{name}], /api/kernels[/{kernel_id}[/...]] and
    /script-engine/kernels/{kernel_id}/connection."""
    kid = path_param("kernel_id")
    return {
        "/api": {
            "get": {
                "summary": "Jupyter API version (for Jupyter Server's gateway client)",
                "responses": {"200": {"description": "{version}"}},
            }
        },
        "/api/kernelspecs": {
            "get": {
                "summary": "Kernelspecs (Jupyter kernels API)",
                "responses": {"200": {"description": "{default, kernelspecs}"}},
            }
        },
        "/api/kernelspecs/{name}": {
            "get": {
                "summary": "One kernelspec",
                "parameters": path_param("name"),
                "responses": {
                    "200": {"description": "{name, spec, resources}"},
                    "404": err("KERNELSPEC_NOT_FOUND"),
                },
            }
        },
        "/kernelspecs/{name}/{file}": {
            "get": {
                "summary": "A kernelspec's resource file (logo-32x32.png, logo-64x64.png), "
                "for JupyterLab's kernel icon",
                "parameters": path_param("name") + path_param("file"),
                "responses": {
                    "200": {"description": "the file (image/png)"},
                    "404": err("KERNELSPEC_RESOURCE_NOT_FOUND"),
                },
            }
        },
        "/api/kernels": {
            "get": {
                "summary": "Running kernels: every script replica under a stable id that survives its "
                "restarts (with vwed.script_id/script_path/replica/kernel_id) and scratch "
                "kernels",
                "responses": {"200": {"description": "a list of kernel models"}},
            },
            "post": {
                "summary": "Start a scratch VWED kernel",
                "requestBody": body({"name": STR}),
                "responses": {"201": {"description": "the kernel model"}},
            },
        },
        "/api/kernels/{kernel_id}": {
            "get": {
                "summary": "One kernel",
                "parameters": kid,
                "responses": {
                    "200": {"description": "the kernel model"},
                    "404": err("KERNEL_NOT_FOUND"),
                },
            },
            "delete": {
                "summary": "Shut a kernel down (a script kernel: the script is stopped)",
                "parameters": kid,
                "responses": {"204": {"description": "gone"}, "404": err("KERNEL_NOT_FOUND")},
            },
        },
        "/api/kernels/{kernel_id}/interrupt": {
            "post": {
                "summary": "Interrupt a kernel",
                "parameters": kid,
                "responses": {
                    "204": {"description": "interrupted"},
                    "404": err("KERNEL_NOT_FOUND"),
                },
            }
        },
        "/api/kernels/{kernel_id}/restart": {
            "post": {
                "summary": "Restart a kernel (a script kernel: the script is restarted from its file)",
                "parameters": kid,
                "responses": {
                    "200": {"description": "the new kernel model"},
                    "404": err("KERNEL_NOT_FOUND"),
                },
            }
        },
        "/api/kernels/{kernel_id}/channels": {
            "get": {
                "summary": "WebSocket: the kernel's Jupyter messages (JSON, one per frame, with 'channel')",
                "parameters": kid,
                "responses": {
                    "101": {"description": "switching protocols"},
                    "404": err("KERNEL_NOT_FOUND"),
                },
            }
        },
        "/script-engine/kernels/{kernel_id}/connection": {
            "get": {
                "summary": "A kernel's connection info (holds its key), for jupyter console --existing",
                "parameters": kid,
                "responses": {
                    "200": {"description": "ip, ports, key, transport"},
                    "404": err("KERNEL_NOT_FOUND"),
                },
            }
        },
    }
