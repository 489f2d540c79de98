"""Mobile-artifact analysis: execution-provider coverage, static memory and latency estimates.

Everything here is computed from the graph, never timed: results carry `"label": "estimated"`
(or the EP checker's own verdicts) so a report never mixes them with measured numbers.
"""
