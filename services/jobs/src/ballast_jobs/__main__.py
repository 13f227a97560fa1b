"""`python -m ballast_jobs worker` (what `ballast app run` starts)."""

from ballast_jobs.cli import app

app(prog_name="ballast-jobs")
