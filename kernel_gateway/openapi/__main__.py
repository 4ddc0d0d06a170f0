"""Print the OpenAPI document: python -m kernel_gateway.openapi > docs/openapi.json"""

from __future__ import annotations

import json

from . import build_openapi

print(json.dumps(build_openapi(), indent=2))
