"""Pages the docs build writes from the code and the saved results (mkdocs-gen-files), so they
cannot go stale: the job spec reference, and the benchmark page's table of latest figures."""

import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import bench_table  # noqa: E402
import spec_reference  # noqa: E402

with mkdocs_gen_files.open("reference/spec.md", "w") as page:
    page.write(spec_reference.render())

with mkdocs_gen_files.open("benchmarks.md", "w") as page:
    page.write((ROOT / "scripts" / "benchmarks_page.md").read_text().replace("{{ latest_figures }}", bench_table.render()))

# The changelog lives at the root, where a reader of the repository looks first; the site shows it as it is.
with mkdocs_gen_files.open("changelog.md", "w") as page:
    page.write((ROOT / "CHANGELOG.md").read_text().replace("](docs/", "]("))
