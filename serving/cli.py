"""`biomed serve deploy|status|shutdown`. Deploy flags are generated from ServeSpec, whose field
descriptions are their help text."""

from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

from jobs.output import emit, pretty
from jobs.serve_spec import ServeSpec


def _flag_type(annotation):
    return {int: int, float: float, str: str}.get(annotation)


def add_serve_parser(sub, *, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="host registered checkpoints on Ray Serve (HTTP)")
    serve_sub = p.add_subparsers(dest="serve_command", required=True)
    d = serve_sub.add_parser("deploy", parents=parents, help="deploy NAME (its best version) or NAME@VERSION; several names share one deployment")
    d.add_argument("refs", nargs="+", metavar="MODEL")
    d.add_argument("--address", default=None, help="Ray cluster address; default: a local head on 127.0.0.1 that stays up")
    for name, field in ServeSpec.model_fields.items():
        flag = "--" + name.replace("_", "-")
        text = field.description.replace("%", "%%")  # argparse formats help with %
        if field.annotation is bool:
            d.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction, help=text)
        elif get_origin(field.annotation) is Literal:
            d.add_argument(flag, dest=name, default=None, choices=get_args(field.annotation), help=f"{text} (default {field.default})")
        else:
            d.add_argument(flag, dest=name, default=None, type=_flag_type(field.annotation), help=f"{text} (default {field.default})")
    d.set_defaults(func=cmd_serve)
    for command, text in (("status", "applications, deployments and replica states"), ("shutdown", "remove the deployment (and the local head this tool started)")):
        s = serve_sub.add_parser(command, parents=parents[:1], help=text)
        s.add_argument("--address", default=None, help="Ray cluster address; default: the local head")
        s.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from serving.deploy import deploy, shutdown, status

    if args.serve_command == "deploy":
        overrides = {name: getattr(args, name) for name in ServeSpec.model_fields}
        payload = deploy(args.refs, storage_path=args.storage, overrides=overrides, address=args.address)
        human = _print_deploy
    elif args.serve_command == "status":
        payload, human = status(address=args.address), pretty
    else:
        payload, human = shutdown(address=args.address), pretty
    emit(payload, as_json=args.json, human=human)
    return 0


def _print_deploy(p: dict) -> None:
    print(f"serving {', '.join(p['models'])} at {p['url']} (docs: {p['docs_url']})")
    token = p["token"] if p["token"].startswith("$") else f"$(cat {p['token']})"
    first = p["predict_urls"][0]
    print(f"  curl -H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' -d '{{\"inputs\": [\"...\"]}}' {first}")
    if p.get("replica_urls"):
        print(f"  the replicas' own ports (no proxy hop; spread requests over them): {' '.join(p['replica_urls'])}")
    print("  stop with: biomed serve shutdown")
