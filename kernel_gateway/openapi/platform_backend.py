"""OpenAPI paths of the embedded platform backend: storage locations, robots, tasks."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, body, err, ok

__all__ = ["platform_paths"]


def platform_paths() -> dict[str, Any]:
    """/script-engine/platform/locations, robots and tasks."""
    return {
        "/script-engine/platform/locations": {
            "get": {
                "summary": "Storage locations of the embedded platform backend",
                "parameters": [{"name": "zone", "in": "query", "schema": STR}],
                "responses": {"200": ok("locations", {"locations": {"type": "array"}})},
            },
            "post": {
                "summary": "Create or update a storage location",
                "requestBody": body(
                    {"location_code": STR, "zone": STR, "goods": STR, "data": OBJ},
                    ["location_code"],
                ),
                "responses": {"201": ok("the location"), "400": err("MISSING_FIELD")},
            },
        },
        "/script-engine/platform/robots": {
            "get": {
                "summary": "Robots of the embedded platform backend",
                "responses": {"200": ok("robots", {"robots": {"type": "array"}})},
            },
            "post": {
                "summary": "Register or update a robot",
                "requestBody": body({"robot_id": STR, "status": STR, "data": OBJ}, ["robot_id"]),
                "responses": {"201": ok("the robot"), "400": err("MISSING_FIELD")},
            },
        },
        "/script-engine/platform/tasks": {
            "get": {
                "summary": "A task of the embedded platform backend",
                "parameters": [{"name": "task_id", "in": "query", "required": True, "schema": STR}],
                "responses": {"200": ok("the task"), "404": err("TASK_NOT_FOUND")},
            },
            "post": {
                "summary": "Create a task",
                "requestBody": body({"task_label": STR, "input_params": OBJ}, ["task_label"]),
                "responses": {"201": ok("the task"), "400": err("MISSING_FIELD")},
            },
        },
    }
