"""The rollout service's own Prometheus metrics (the gRPC ones come from limi_core.grpc_edge)."""

from prometheus_client import Counter, Gauge, Histogram

EPISODES_ACTIVE = Gauge("limi_rollout_episodes_active", "Episodes running now")
EPISODES_FINISHED = Counter("limi_rollout_episodes_finished_total", "Episodes finished, by outcome", ["status"])
TURNS_PER_EPISODE = Histogram(
    "limi_rollout_turns_per_episode", "Model turns per finished episode", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
TOOL_CALLS = Counter("limi_rollout_tool_calls_total", "Tool calls, by tool and outcome", ["tool", "outcome"])
POLICY_LATENCY = Histogram(
    "limi_rollout_policy_latency_seconds",
    "Chat completion latency including retries",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TOKENS = Counter("limi_rollout_tokens_total", "Tokens in and out of the policy", ["direction"])
TIME_SPENT = Counter(
    "limi_rollout_time_seconds_total", "Episode time spent in the model, in tools, and elsewhere", ["part"]
)
TRAJECTORIES_PUBLISHED = Counter(
    "limi_rollout_trajectories_published_total", "Trajectories published, by outcome", ["status"]
)
CORRECTIONS = Counter("limi_rollout_corrections_total", "Corrections injected into live episodes")
