"""The long chaos run, by hand (issue 11 §7): ``aftersales up`` under many SIGKILLs.

    python scripts/chaos.py --kills 100 --tickets 24 --backend sqlite
    python scripts/chaos.py --kills 100 --backend postgres   # a fresh database, dropped after
    CHAOS_SEED=1234 python scripts/chaos.py ...               # replay a seed's kill schedule

Prints the seed first, then the figures (kills by kind, tickets, lost / stuck / doubled
/ unfired, wall time) and exits 1 when any assertion of :mod:`tests.chaos.driver` fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def main() -> int:
    from tests.chaos.driver import ChaosConfig, run_chaos, seed_from_env
    from tests.conftest import drop_postgres_database, fresh_postgres_database, postgres_admin_url

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--tickets", type=int, default=24)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--seed", type=int, default=None, help="default: CHAOS_SEED or random")
    ap.add_argument("--gap", type=float, nargs=2, default=(4.0, 16.0), metavar=("MIN", "MAX"),
                    help="seconds between kills (seeded uniform)")  # fmt: skip
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else seed_from_env()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aftersales-chaos-"))
    admin = None
    if args.backend == "postgres":
        admin = postgres_admin_url()
        if admin is None:
            print("PostgreSQL not reachable (AFTERSALES_TEST_POSTGRES_URL)", file=sys.stderr)
            return 2
        url = fresh_postgres_database(admin)
    else:
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{work / 'chaos.db'}"
    os.environ["AFTERSALES_DATABASE_URL"] = url  # this process reads the same database
    print(f"CHAOS_SEED={seed} ({args.backend}); workdir {work}", flush=True)
    try:
        report = run_chaos(
            ChaosConfig(seed=seed, database_url=url, workdir=work / "run", kills=args.kills,
                        tickets=args.tickets, kill_gap=tuple(args.gap)),
            args.backend,
        )  # fmt: skip
    finally:
        if admin is not None:
            drop_postgres_database(admin, url)
    print(report.summary(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
