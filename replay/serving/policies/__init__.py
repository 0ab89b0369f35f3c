"""Scheduling policies, each registered by name: queue order, preemption victim, multi-replica router."""

from replay.serving.policies.queue import QUEUE_POLICIES, QueuePolicy
from replay.serving.policies.router import ROUTERS, Router
from replay.serving.policies.victim import VICTIM_POLICIES, VictimPolicy

__all__ = ["QUEUE_POLICIES", "QueuePolicy", "ROUTERS", "Router", "VICTIM_POLICIES", "VictimPolicy"]
