"""`python -m emulator`: the local API server. Flags override `CUTOUT_EMULATOR_*` variables."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from config.secret_files import SecretFileError
from emulator.server import serve
from emulator.settings import EmulatorSettings

# flag -> (settings field, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "interface to listen on (default 127.0.0.1)"),
    "--port": ("port", int, "port; 0 picks a free one (default 8000)"),
    "--rate-limit": ("rate_limit", float, "calls per window per PublicKey; 0 = unlimited"),
    "--rate-window-s": ("rate_window_s", float, "the sliding window, seconds (default 1)"),
    "--throttle-http-status": ("throttle_http_status", int, "200 (default) or 429"),
    "--credits": ("credits", int, "credits per key (default unlimited)"),
    "--queue-s": ("queue_s", float, "seconds a task stays Queuing (default 0.5)"),
    "--run-s": ("run_s", float, "seconds a task stays Running (default 1)"),
    "--result-ttl-s": ("result_ttl_s", float, "seconds result URLs live (default 86400)"),
    "--public-url": ("public_url", str, "base of result URLs (default: the caller's Host)"),
    "--fault-error-5xx": ("fault_error_5xx", float, "fraction of calls answered HTTP 503"),
    "--fault-drop": ("fault_drop", float, "fraction of calls dropped before processing"),
    "--fault-drop-after": ("fault_drop_after", float,
                           "fraction of calls processed, then dropped without an answer"),
    "--fault-throttle": ("fault_throttle", float, "fraction of calls answered RetCode 140"),
    "--fault-slow-rate": ("fault_slow_rate", float, "fraction of answers held back"),
    "--fault-slow-s": ("fault_slow_s", float, "how long a held-back answer waits"),
    "--fault-task-error": ("fault_task_error", float, "fraction of tasks that end in Error"),
    "--fault-result-5xx": ("fault_result_5xx", float, "fraction of result downloads given 503"),
    "--fault-result-slow-s": ("fault_result_slow_s", float,
                              "seconds every result download waits before its answer"),
    "--fault-status-after": ("fault_status_after", float,
                             "fraction of calls processed, then answered with a gateway error"),
    "--fault-status-after-code": ("fault_status_after_code", int,
                                  "that gateway error's HTTP status: 500, 502 (default), 503, 504"),
    "--fault-bad-detail": ("fault_bad_detail", float,
                           "fraction of tasks whose ListTasksDetails entry is unreadable"),
    "--seed": ("seed", int, "seed of the fault dice"),
    "--max-body-bytes": ("max_body_bytes", int, "larger bodies get HTTP 413"),
    "--max-stored-bytes": ("max_stored_bytes", int, "images and results kept in memory"),
    "--max-calls-logged": ("max_calls_logged", int, "calls kept for /_admin/calls"),
    "--render-threads": ("render_threads", int, "threads rendering result images"),
    "--render": ("render", str, "matting (default) or plain: results without matting"),
    "--model-path": ("model_path", str, "a U2Net-family ONNX model for the neural engine"),
    "--log-level": ("log_level", str, "uvicorn's log level (default warning)"),
}


def parse_args(argv: Sequence[str] | None = None) -> EmulatorSettings:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--key", action="append", dest="keys", metavar="PUBLIC:PRIVATE",
                        help="a key pair (repeatable); replaces CUTOUT_EMULATOR_KEYS")
    for flag, (dest, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=dest, type=kind, help=text)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return EmulatorSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        parser.error(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    except SecretFileError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
