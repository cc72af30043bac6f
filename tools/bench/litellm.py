"""Plumbing for `--compare-litellm PATH`: a LiteLLM proxy, installed by the user, in front of the same
simulator, so the same loads measure what it adds."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from .scenarios import MODEL, UPSTREAM_KEY


def litellm_executable(path: Path) -> Path:
    """PATH may be the `litellm` command itself, or the virtualenv (or its bin/) that holds it."""
    for candidate in (path, path / "litellm", path / "bin" / "litellm"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"no litellm command at {path} (give the command, or the virtualenv holding it)")


def litellm_config(path: Path, simulator_url: str, workdir: Path) -> tuple[Path, Path, str]:
    """(the command, its config file, the master key to call it with)."""
    executable = litellm_executable(path)
    master_key = f"sk-bench-{secrets.token_hex(8)}"
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{simulator_url}/v1",
                                   "api_key": UPSTREAM_KEY},
            }
        ],
        # No database: LiteLLM keeps no spend logs or budgets without one, so it does less than Tokonomics here.
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"drop_params": True, "set_verbose": False},
    }
    path_out = workdir / "litellm.yaml"
    path_out.write_text(yaml.safe_dump(config))
    return executable, path_out, master_key


def litellm_environment() -> dict[str, str]:
    """The user's environment without Tokonomics' database and Redis, which LiteLLM would try to use."""
    return {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
