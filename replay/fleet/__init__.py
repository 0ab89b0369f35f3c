"""Cluster-level LLM serving: serving topologies (colocated, disaggregated prefill/decode, mixed pools),
KV-cache transfer over an interconnect, live migration between replicas, power/energy and cost per
request, and a search for the cheapest configuration that meets the SLOs.

Topologies: `topology` (FleetConfig, PoolConfig, MigrationConfig), `interconnect` (Link presets, KV copy
time and bytes), `simulate` (the fleet's virtual-time loop: KV hand-off from prefill to decode instances),
`migration` (Llumnix-style load-balance and de-fragmentation triggers), `harness` (`run_fleet`: per-request
and per-step columns and a summary). Search: `search` (candidate layouts, comparison rows, the cheapest
SLO-meeting layout, throughput under the SLOs and Splitwise's ratios); `cli` (`tracelab replay fleet` and
`fleet-search`).

Builds on the serving core (`replay.serving`) and its replay loop; like it, never imports predictors,
sklearn or polars.
"""
