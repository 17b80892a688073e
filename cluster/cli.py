"""`biomed cluster up|down|info`, `biomed submit` and `biomed jobs list|status|logs|stop`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.output import emit, pretty

ADDRESS_HELP = "the Ray dashboard URL, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS, else the local head)"


def add_cluster_parsers(sub, *, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cluster", help="a local Ray head for trying things out, and what a cluster holds")
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True)
    c = cluster_sub.add_parser("up", parents=[common], help="start a Ray head on 127.0.0.1 with token auth (use `ray up cluster.yaml` for a real cluster)")
    c.add_argument("--local", action="store_true", required=True, help="a head on this machine, bound to 127.0.0.1")
    c.add_argument("--num-cpus", type=int, default=None, help="CPUs the head offers (default: all)")
    c.set_defaults(func=cmd_cluster)
    c = cluster_sub.add_parser("down", parents=[common], help="stop the local head `cluster up --local` started (nothing else)")
    c.set_defaults(func=cmd_cluster)
    c = cluster_sub.add_parser("info", parents=[common], help="CPUs, GPUs and nodes of a cluster")
    c.add_argument("--address", default=None, help="a dashboard URL, `auto`, ray://HOST:10001 or HOST:PORT (default: the local head, else the embedded local Ray)")
    c.set_defaults(func=cmd_cluster)

    p = sub.add_parser("submit", parents=[common], help="validate a spec here, then run it on a cluster through Ray's Jobs API")
    p.add_argument("spec")
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--tune", action="store_true", help="run `biomed tune` (the spec's tune: section) instead of `biomed train`")
    p.add_argument("--storage-path", default=None, help="override the spec's storage_path: a folder every node sees (shared storage)")
    p.add_argument("--cluster-config", default=None, help="check the spec's scaling against this launcher file's node types instead of the live nodes")
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends; exit 1 unless it succeeded")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="jobs on a cluster (Ray's Jobs API; `ray job list` shows the same)")
    jobs_sub = p.add_subparsers(dest="jobs_command", required=True)
    j = jobs_sub.add_parser("list", parents=[common], help="every job, oldest first")
    j.add_argument("--address", default=None, help=ADDRESS_HELP)
    j.set_defaults(func=cmd_jobs)
    for command, text in (("status", "one job's status"), ("logs", "one job's driver logs"), ("stop", "stop a job and wait until it has stopped")):
        j = jobs_sub.add_parser(command, parents=[common], help=text)
        j.add_argument("job_id", metavar="ID")
        j.add_argument("--address", default=None, help=ADDRESS_HELP)
        if command == "logs":
            j.add_argument("--follow", action="store_true", help="stream until the job ends")
        j.set_defaults(func=cmd_jobs)


def cmd_cluster(args) -> int:
    from cluster.local_head import start_head, stop_head

    if args.cluster_command == "up":
        from cluster.resources import wait_for_nodes

        head = start_head(num_cpus=args.num_cpus, started_by="cluster")
        wait_for_nodes(head["dashboard_url"])
        token = Path.home() / ".ray" / "auth_token"
        payload = {**head, "token_path": str(token)}
        emit(payload, as_json=args.json, human=_print_up)
    elif args.cluster_command == "down":
        stopped = stop_head(only_started_by="cluster")
        emit({"stopped_local_head": stopped}, as_json=args.json, human=lambda p: print("stopped the local head" if stopped else "no local head started by `biomed cluster up --local` is running"))
    else:
        from cluster.connect import cluster_info

        emit(cluster_info(address=args.address), as_json=args.json, human=_print_info)
    return 0


def _print_up(p: dict) -> None:
    print(f"local Ray head on {p['address']} (pid {p['pid']}), dashboard and Jobs API at {p['dashboard_url']}")
    print(f"  token auth is on; the token is in {p['token_path']}. Clients send it when RAY_AUTH_MODE=token:")
    print(f"    biomed submit configs/drug_reviews.yaml --address {p['dashboard_url']}")
    print(f"    RAY_AUTH_MODE=token ray job list --address {p['dashboard_url']}")
    print(f"  from another machine or user: RAY_AUTH_TOKEN=$(cat {p['token_path']})")
    print("  stop it with: biomed cluster down")


def _print_info(p: dict) -> None:
    print(f"{p['address']}: {p['num_nodes']} nodes, {p['num_cpus']:g} CPUs, {p['num_gpus']:g} GPUs")
    for n in p["nodes"]:
        print(f"  {n['node_id'][:12]} {n['node_ip']} {'head ' if n['is_head'] else ''}CPU {n['num_cpus']:g} GPU {n['num_gpus']:g}")


def cmd_submit(args) -> int:
    from cluster.submit import TERMINAL_STATUSES, job_logs, submit_spec, wait_for

    result = submit_spec(args.spec, address=args.address, command="tune" if args.tune else "train", storage_path=args.storage_path, cluster_config=args.cluster_config)
    if args.follow:
        print(f"{'submitted' if result['submitted'] else 'already submitted'}: {result['submission_id']}", file=sys.stderr)
        job_logs(result["submission_id"], address=result["address"], follow=True, write=lambda text, end="": sys.stderr.write(text + end))
        final = wait_for(result["submission_id"], address=result["address"], statuses=TERMINAL_STATUSES, timeout_s=30)
        result = {**result, "status": final["status"], "message": final["message"]}
    emit(result, as_json=args.json, human=_print_submit)
    return 0 if not args.follow or result["status"] == "SUCCEEDED" else 1


def _print_submit(p: dict) -> None:
    verb = "submitted" if p["submitted"] else "not resubmitted"
    print(f"{verb} {p['submission_id']} to {p['address']}: {p['status']}" + ("" if p["submitted"] else f" ({p['reason']})"))
    print(f"  follow it: biomed jobs logs {p['submission_id']} --follow --address {p['address']}")


def cmd_jobs(args) -> int:
    from cluster import submit

    if args.jobs_command == "list":
        emit({"jobs": submit.list_jobs(address=args.address)}, as_json=args.json, human=lambda p: _print_jobs(p["jobs"]))
    elif args.jobs_command == "status":
        emit(submit.job_status(args.job_id, address=args.address), as_json=args.json, human=pretty)
    elif args.jobs_command == "logs":
        # Logs go to stdout as they are; with --json the final status is the last line.
        row = submit.job_logs(args.job_id, address=args.address, follow=args.follow)
        if args.json:
            print(json.dumps(row, default=str))
    else:
        emit(submit.stop_job(args.job_id, address=args.address), as_json=args.json, human=lambda p: print(f"{p['submission_id']}: {p['status']}"))
    return 0


def _print_jobs(rows: list[dict]) -> None:
    if not rows:
        print("no jobs")
    for r in rows:
        print(f"{r['submission_id']}\t{r['status']}\t{r['entrypoint']}")
