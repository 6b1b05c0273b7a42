"""Download one dataset file from the configured mirrors, every configured checksum verified.

Job: output file; settings {"mirrors": [...], "file": name, "md5": ..., "sha256": ..., "size": ...}
(the config's dataset.mirrors and one entry of dataset.files; size optional). Every transfer is
bounded in bytes and time (``cnnbench.data.download``); SIGTERM/SIGINT remove its temporary file
(``cnnbench.common.job.run_job``).
"""

from __future__ import annotations

import sys

from cnnbench.common.job import Job, run_job
from cnnbench.data import DIGESTS, download


def run(job: Job) -> None:
    settings = job.settings
    download(
        settings["file"],
        settings["mirrors"],
        job.path("output", "file"),
        {name: settings[name] for name in DIGESTS if name in settings},
        size=settings.get("size"),
        log=lambda message: print(message, file=sys.stderr),
    )


if __name__ == "__main__":
    run_job(run)
