#!/usr/bin/env python
"""Check that the conda environment files can be installed, without installing them (CI runs this).

--resolve: for each environment file, pip resolves its pip section (`pip install --dry-run --ignore-installed
--use-feature=fast-deps --report`) for this interpreter's Python and platform. With pip >= 26 and fast-deps,
pip reads each wheel's metadata by HTTP range requests instead of downloading it, so even the vLLM env (torch,
vllm, CUDA libraries: about 4 GiB of wheels) resolves with about 100 MiB of traffic in a minute or two. A
conflict (pip's ResolutionImpossible) fails the check with pip's message. Each resolved set is written to
--report_dir/resolve_<env>.json (pip's installation report) and summarised in one line.

--small_venv_requirements FILE: write the pins of the second CI venv, the one that runs the vLLM-facing tests
(pytest -m vllm_env) on the vLLM env's transformers version without vllm or CUDA: the packages of
--small_venv_packages at their requirements-vllm.txt versions, except torch, which keeps requirements.txt's CPU
pin (torch does not constrain transformers; the vLLM env's torch 2.14.0 exists here only as a CUDA wheel).

Both files must also agree with the requirement files: aligner_env.yml = requirements.txt + requirements-gpu.txt,
vllm_env.yml = requirements-vllm.txt (tests/test_runinfo_envs.py checks it offline).

Example:
    python scripts/check_envs.py --resolve aligner_env.yml vllm_env.yml
    python scripts/check_envs.py --resolve --small_venv_requirements .venv/vllm-tf/requirements.txt
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.envs import CheckEnvsConfig, check_envs


def parse_args(argv=None) -> CheckEnvsConfig:
    return parse_config(CheckEnvsConfig, argv, description=__doc__)


def main(argv=None):
    return check_envs(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
