"""Entry point of a worker process: `python -m tuneforge.jobs JOB_ID`.

SIGTERM (a cancel request) is caught before anything heavy is imported, so a cancel that arrives
while the worker is still starting is not lost.
"""

import signal
import sys
import threading


def main() -> None:
    terminate = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminate.set())
    from tuneforge.jobs.worker import main as run

    sys.exit(run(sys.argv[1], terminate))


if __name__ == "__main__":
    main()
