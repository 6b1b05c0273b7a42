from cnnbench.common.job import run_job
from cnnbench.report import run

run_job(run)
