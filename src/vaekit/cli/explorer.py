"""`vaekit explore RUN`: the latent-space explorer in a browser, served from this machine only."""

from __future__ import annotations

import time
import webbrowser

from . import args as flags
from .common import run_data


def cmd_explore(args) -> None:
    from ..errors import InputError
    from ..explorer import ModelView, serve
    from ..loading import load

    if args.host not in ("127.0.0.1", "localhost") and not args.allow_remote:
        raise InputError(f"--host {args.host} would open the explorer to other machines; add --allow-remote if you mean it.")
    start = time.perf_counter()
    model = load(args.run)
    data = run_data(args, "test", limit=args.limit)
    view = ModelView(model, data.x, data.y, name=str(args.run))
    server = serve(view, args.host, args.port)
    url = f"http://{args.host}:{server.server_port}/"
    print(f"Explorer for {args.run} at {url} (ready in {time.perf_counter() - start:.1f} s; Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
        raise KeyboardInterrupt("the explorer stopped") from None


def add_parser(sub) -> None:
    p = sub.add_parser("explore", help="move through a model's latent space in the browser (a local web page)")
    flags.run(p)
    flags.data(p, f"held-out data to map ({flags.DATA_SOURCES}) (default: the run's own data, test split)")
    flags.data_dir(p)
    flags.limit(p, "map at most N examples (default 1000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other machines can reach")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=cmd_explore, limit=1000)
