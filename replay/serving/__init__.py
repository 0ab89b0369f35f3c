"""LLM serving core: requests, paged KV blocks, the token-budget scheduler, policies and executors.

Never imports predictors, sklearn or polars (DESIGN.md): policies that need predictions take
values computed by the harness.
"""
