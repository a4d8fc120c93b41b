"""Names from OpenTelemetry's GenAI semantic conventions, and orchestrion's own.

Defined here rather than imported: the Python constants package marks every
GenAI name deprecated (they moved to their own repository), and the names are
what backends key on, so they are written out once and tested against the spec's
spelling.
"""

from __future__ import annotations

from typing import Final

# Operations (`gen_ai.operation.name`) and the spans named after them.
CHAT: Final = "chat"
EXECUTE_TOOL: Final = "execute_tool"
INVOKE_AGENT: Final = "invoke_agent"
INVOKE_WORKFLOW: Final = "invoke_workflow"

# Attributes.
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
ERROR_TYPE: Final = "error.type"

# Content: only when the user opts in (`Instrumentation(capture_content=True)`).
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# orchestrion's own attributes.
RUN_ID: Final = "orchestrion.run.id"
RUN_STATUS: Final = "orchestrion.run.status"
RUN_RESUMED: Final = "orchestrion.run.resumed"
RUN_QUEUE: Final = "orchestrion.run.queue"
STEP_KEY: Final = "orchestrion.step.key"
STEP_KIND: Final = "orchestrion.step.kind"
PATTERN: Final = "orchestrion.pattern"
USAGE_COST: Final = "orchestrion.usage.cost_usd"
FALLBACK_FROM: Final = "orchestrion.fallback_from"
TOOL_EFFECT: Final = "orchestrion.tool.effect"
TOOL_RESUMED: Final = "orchestrion.tool.resumed"
"""A write tool's call made again after a crash, with the same idempotency key."""
DELEGATE_TO: Final = "orchestrion.delegate_to"
TRANSFER_TO: Final = "orchestrion.transfer_to"

# Span events.
RETRY: Final = "orchestrion.retry"
FALLBACK: Final = "orchestrion.fallback"
BREAKER: Final = "orchestrion.breaker"
LOOP_GUARD: Final = "orchestrion.loop_guard"
HANDOFF: Final = "orchestrion.handoff"
INTERRUPT: Final = "orchestrion.interrupt"
