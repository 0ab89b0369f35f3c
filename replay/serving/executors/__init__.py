"""Executors run a StepPlan: SimulatedExecutor (a CostModel turns plans into seconds) and, where a GPU exists, a real one."""
