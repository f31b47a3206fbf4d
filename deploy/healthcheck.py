"""The container's health check: is the studio answering `/api/v1/health`?

    python /opt/tuneforge/healthcheck.py                      # the studio in this container
    python /opt/tuneforge/healthcheck.py --wait 600 URL       # wait for a studio elsewhere

Exits 0 when the studio answers 200 with `"status": "ok"`, 1 otherwise, printing why (Docker keeps
the output in `docker inspect`). Without a URL it asks the port the studio in this container
listens on (`TUNEFORGE_PORT`, 7860 by default) on the loopback address, so it works whatever
`TUNEFORGE_HOST` the studio binds to as long as that includes loopback (`0.0.0.0`, the image's
default). With `--wait SECONDS` it asks again every two seconds until the studio is healthy or the
time is up: the Kubernetes workers wait so for the studio, which brings the database schema up to
date first. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def check(url: str, timeout: float = 8.0) -> str | None:
    """None when the studio's health endpoint at `url` says ok, else the reason."""
    if not url.startswith(("http://", "https://")):
        return f"{url} is not an http(s) URL"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only)
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # 503: a part is failing; the body says which
        try:
            detail = json.load(exc)
        except ValueError:
            detail = exc.reason
        return f"{url} answered {exc.code}: {detail}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer: {exc}"
    if not isinstance(body, dict) or body.get("status") != "ok":
        return f"{url} answered {body}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Is the TuneForge studio healthy?")
    parser.add_argument(
        "url",
        nargs="?",
        help="The health endpoint [default: http://127.0.0.1:$TUNEFORGE_PORT/api/v1/health].",
    )
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="Keep asking this long."
    )
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://", "https://")):
        parser.error(f"the URL must start with http:// or https://, not {args.url!r}")
    port = os.environ.get("TUNEFORGE_PORT", "7860")
    url = args.url or f"http://127.0.0.1:{port}/api/v1/health"
    deadline = time.monotonic() + args.wait
    while (reason := check(url)) is not None and time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
