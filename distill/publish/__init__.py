"""Publishing: Hub model cards rendered from a run's report and recipe, and `distill push`."""

from distill.publish.card import render_card
from distill.publish.push import PushResult, push_run
from distill.publish.run_info import load_run

__all__ = ["PushResult", "load_run", "push_run", "render_card"]
