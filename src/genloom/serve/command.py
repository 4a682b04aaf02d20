"""What ``genloom serve`` does, given the arguments ``cli.py`` parsed (apart from ``commands.py``, so that the other
commands start without loading FastAPI and uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from genloom.errors import UserError
from genloom.serve.app import ServeSettings, check_settings, create_app, load_named


def cmd_serve(args: argparse.Namespace) -> int:
    settings = ServeSettings(api_key=args.api_key or os.environ.get("GENLOOM_API_KEY"), cors_origins=args.cors_origin,
                             max_batch=args.max_batch, max_waiting=args.max_waiting, max_tokens=args.max_tokens,
                             max_body_bytes=args.max_body_bytes)
    check_settings(settings)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must lie in [0, 65535], got {args.port}.")
    models = load_named(args.checkpoints, args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(f"genloom: warning: serving on {args.host} without an API key; anyone who can reach this port can use "
              "the models (set --api-key or GENLOOM_API_KEY).", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"genloom: serving {', '.join(models)} at http://{shown}:{args.port}/ (the playground; API under /v1, "
          "its schema at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(models, settings), host=args.host, port=args.port, log_level="info",
                timeout_graceful_shutdown=5)
    return 0
