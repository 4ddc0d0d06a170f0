"""ETag / If-Match on the script files: a save refuses to overwrite a change made
since the file was read (409 FILE_CHANGED), over a real gateway."""

from __future__ import annotations

import hashlib

import nbformat
import pytest

from conftest import unique

pytestmark = pytest.mark.timeout(60)


def etag(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_get_returns_the_etag_in_header_and_body(client, scripts):
    text = "def boot():\n    pass  # é\n"
    rel = scripts.write(f"{unique('et')}.py", text)
    r = client.get(f"/script-engine/files/{rel}")
    assert r.status_code == 200
    assert r.json()["etag"] == etag(text)
    assert r.headers["ETag"] == f'"{etag(text)}"'


def test_put_with_if_match(client, scripts_dir):
    rel = f"{unique('et')}.py"
    r = client.put(f"/script-engine/files/{rel}", json={"content": "x = 1\n"})
    assert r.status_code == 200 and r.json()["created"] is True
    first = r.json()["etag"]
    assert first == etag("x = 1\n") and r.headers["ETag"] == f'"{first}"'

    # the current etag: written, a new etag back
    r = client.put(
        f"/script-engine/files/{rel}",
        json={"content": "x = 2\n"},
        headers={"If-Match": f'"{first}"'},
    )
    assert r.status_code == 200, r.text
    second = r.json()["etag"]
    assert second == etag("x = 2\n") != first
    assert client.get(f"/script-engine/files/{rel}").json()["content"] == "x = 2\n"

    # a stale etag: 409 with the current one, and the file untouched
    r = client.put(
        f"/script-engine/files/{rel}",
        json={"content": "x = 3\n"},
        headers={"If-Match": f'"{first}"'},
    )
    assert r.status_code == 409
    assert r.json() == {
        "success": False,
        "error": r.json()["error"],
        "code": "FILE_CHANGED",
        "etag": second,
    }
    assert (scripts_dir / rel).read_text() == "x = 2\n"

    # changed on disk by someone else (an editor, git): the etag says so
    (scripts_dir / rel).write_text("x = 4\n")
    r = client.put(
        f"/script-engine/files/{rel}", json={"content": "x = 5\n"}, headers={"If-Match": second}
    )
    assert (r.status_code, r.json()["code"], r.json()["etag"]) == (
        409,
        "FILE_CHANGED",
        etag("x = 4\n"),
    )

    # without If-Match: written as before
    r = client.put(f"/script-engine/files/{rel}", json={"content": "x = 6\n"})
    assert r.status_code == 200 and r.json()["etag"] == etag("x = 6\n")

    # deleted since it was read: 409 too (the etag is null)
    assert client.delete(f"/script-engine/files/{rel}").status_code == 200
    r = client.put(
        f"/script-engine/files/{rel}",
        json={"content": "x = 7\n"},
        headers={"If-Match": etag("x = 6\n")},
    )
    assert (r.status_code, r.json()["code"], r.json()["etag"]) == (409, "FILE_CHANGED", None)
    assert not (scripts_dir / rel).exists()


def test_post_returns_the_etag_and_a_notebook_etag_is_of_its_text(client):
    rel = f"{unique('et')}.py"
    r = client.post(f"/script-engine/files/{rel}", json={"content": "y = 1\n"})
    assert r.status_code == 201 and r.json()["etag"] == etag("y = 1\n")

    nb_rel = f"{unique('et')}.ipynb"
    r = client.post(f"/script-engine/files/{nb_rel}", json={})
    assert r.status_code == 201
    read = client.get(f"/script-engine/files/{nb_rel}").json()
    nbformat.reads(read["content"], as_version=4)
    assert read["etag"] == r.json()["etag"] == etag(read["content"])
    r = client.put(
        f"/script-engine/files/{nb_rel}",
        json={"content": read["content"]},
        headers={"If-Match": f'"{read["etag"]}"'},
    )
    assert r.status_code == 200 and r.json()["etag"] == read["etag"]
