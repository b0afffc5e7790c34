"""Exports GenAI agent spans to the gateway with the official OpenTelemetry Python SDK and its
OTLP/HTTP protobuf exporter (gzip), as an instrumented agent application would.

Usage: export_agent_spans.py ENDPOINT API_KEY SEED TASKS END_MS
Prints one JSON line per task span (the expected task events) and, last, {"export": "<result>"}.
Ids come from a seeded generator: the same SEED exports the same spans again (an exporter retry).
"""
import json
import random
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode, set_span_in_context

endpoint, api_key, seed, tasks, end_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


class SeededIds(IdGenerator):
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def generate_span_id(self):
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self):
        return self.rng.getrandbits(128) or 1


exporter = OTLPSpanExporter(
    endpoint=endpoint,
    headers={"authorization": f"Bearer {api_key}"},
    compression=Compression.Gzip,
)
results = []
original_export = exporter.export


def recording_export(spans):
    result = original_export(spans)
    results.append(result.name)
    return result


exporter.export = recording_export
provider = TracerProvider(
    resource=Resource.create({"service.name": "support-desk"}), id_generator=SeededIds(seed)
)
provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
tracer = provider.get_tracer("agentops.tests", "1.0.0")

AGENTS = ["triage", "billing", "research"]
MS = 1_000_000
for i in range(tasks):
    agent = AGENTS[i % 3]
    end = (end_ms - (tasks - i) * 1_000) * MS
    start = end - (1_500 + 100 * i) * MS
    attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1_000 + i,
        "gen_ai.usage.output_tokens": 100 + i,
    }
    attrs["gen_ai.provider.name" if i % 2 else "gen_ai.system"] = "openai"
    if i % 3 == 0:
        attrs["agentops.human_interventions"] = 1
    status, error_type = "SUCCEEDED", None
    if i % 7 == 6:
        status, error_type = "CANCELLED", "cancelled"
    elif i % 4 == 3:
        status, error_type = "FAILED", "tool_error"
    root = tracer.start_span(f"invoke_agent {agent}", start_time=start, attributes=attrs)
    ctx = set_span_in_context(root)
    chat = tracer.start_span("chat gpt-4o-mini", context=ctx, start_time=start + 10 * MS,
                             attributes={"gen_ai.operation.name": "chat"})
    if i % 5 == 0:
        # An agent called by the model: nested, not a task of its own.
        helper = tracer.start_span("invoke_agent helper", context=set_span_in_context(chat),
                                   start_time=start + 20 * MS,
                                   attributes={"gen_ai.operation.name": "invoke_agent",
                                               "gen_ai.agent.name": "helper"})
        helper.end(end_time=start + 30 * MS)
    chat.end(end_time=start + 40 * MS)
    if error_type:
        root.set_attribute("error.type", error_type)
        root.set_status(Status(StatusCode.ERROR, error_type))
    root.end(end_time=end)
    ctx_ids = root.get_span_context()
    print(json.dumps({
        "trace_id": format(ctx_ids.trace_id, "032x"),
        "span_id": format(ctx_ids.span_id, "016x"),
        "agent": agent,
        "status": status,
        "started_at": start // MS,
        "completed_at": end // MS,
        "input_tokens": 1_000 + i,
        "output_tokens": 100 + i,
        "interventions": 1 if i % 3 == 0 else 0,
    }))

# An agent span without an agent: refused in partial_success, the rest is published.
bad = tracer.start_span("invoke_agent ?", attributes={"gen_ai.operation.name": "invoke_agent"},
                        start_time=(end_ms - 500) * MS)
bad.end(end_time=end_ms * MS)
provider.force_flush()
provider.shutdown()
print(json.dumps({"export": ",".join(results)}))
