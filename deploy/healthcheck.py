"""The container's health check: is the studio in this container answering `/api/v1/health`?

Exits 0 when the studio answers 200 with `"status": "ok"`, 1 otherwise, printing why (Docker keeps
the output in `docker inspect`). It asks the port the studio listens on (`TUNEFORGE_PORT`, 7860 by
default) on the loopback address, so it works whatever `TUNEFORGE_HOST` the studio binds to as long
as that includes loopback (`0.0.0.0`, the image's default). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def check(port: str, timeout: float = 8.0) -> str | None:
    """None when the studio on `port` is healthy, else the reason."""
    url = f"http://127.0.0.1:{port}/api/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # 503: a part is failing; the body says which
        try:
            detail = json.load(exc)
        except ValueError:
            detail = exc.reason
        return f"{url} answered {exc.code}: {detail}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer: {exc}"
    if body.get("status") != "ok":
        return f"{url} answered {body}"
    return None


def main() -> int:
    port = os.environ.get("TUNEFORGE_PORT", "7860")
    reason = check(port)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
