"""Traces of runs with OpenTelemetry, named after the GenAI semantic conventions.

Each execution of a run is a span: `invoke_workflow {name}`, or `invoke_agent {name}`
for an agent run on its own. Under it: a span for each member (`invoke_agent {name}`,
`invoke_workflow {name}`), each model request (`chat {model}`, kind CLIENT), each tool
call (`execute_tool {name}`) and each custom step (`step {name}`). Retries, fallbacks,
breaker changes, loop guards, handoffs and interrupts are span events on the span
they happen in.

**Replay.** A step found in the journal makes no span. A member's span is opened when
the first step under it executes, with the member's own start time: a member that
only replays (it finished before a crash) has none, so a resumed run shows only what
it did again.

**One story.** Every execution of a run hangs under the run's trace context
(`RunRecord.trace`): the span that submitted it (a `traceparent` given, or the span
current where it was started), else its first execution's span. A run resumed by a
human an hour later, or taken over by another worker after a crash, is one trace.

Off (the default) this module is not even imported; the engine tests
`env.tracing is None` where a step goes live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from orchestrion import keys
from orchestrion.agent import Agent
from orchestrion.engine.events import Events, Relay
from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.replay_log import StepsStopped
from orchestrion.errors import LeaseLost, Suspension, UserError
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, ToolResult
from orchestrion.models.registry import provider_and_model
from orchestrion.redact import redact
from orchestrion.telemetry import content
from orchestrion.telemetry import semconv as sc
from orchestrion.telemetry.instrument import Instrumentation
from orchestrion.tools.roles import Delegate
from orchestrion.tools.tool import Tool

if TYPE_CHECKING:
    from orchestrion.engine.model_calls import ModelCalls
    from orchestrion.engine.result import RunResult

T = TypeVar("T")
Attributes = dict[str, AttributeValue]

_PROPAGATOR = TraceContextTextMapPropagator()
_SPAN_KINDS = frozenset({"step"})
"""Custom step kinds that get a span: a user's `ctx.step` (and `ctx.submit`), not a
journaled clock read, seed or uuid."""


class _Scope:
    """A span to be, opened when something live happens under it (or at once, for a
    step), starting when the scope began."""

    __slots__ = (
        "attributes",
        "context",
        "ended",
        "kind",
        "name",
        "parent",
        "root",
        "span",
        "start",
    )

    def __init__(
        self,
        name: str,
        attributes: Attributes,
        parent: _Scope | None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        root: otel.Context | None = None,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.parent = parent
        self.kind = kind
        self.root = root
        """The parent context of a scope with no parent scope (a run's execution)."""
        self.start = time.time_ns()
        self.span: Span | None = None
        self.context: otel.Context | None = None
        self.ended = False

    def open(self, tracer: trace.Tracer) -> otel.Context:
        """The context holding this scope's span, the span (and its parents') made now
        if they were not yet."""
        if self.context is None:
            parent = self.parent.open(tracer) if self.parent is not None else self.root
            self.span = tracer.start_span(
                self.name, parent, self.kind, self.attributes, start_time=self.start
            )
            self.context = trace.set_span_in_context(self.span, parent)
        return self.context

    def end(self, error: BaseException | None = None) -> None:
        span = self.span
        if span is None or self.ended:
            return  # nothing executed under it (no span), or ended already
        self.ended = True
        if isinstance(error, _NOT_FAILURES):  # it waits, or its process stops working on it
            span.add_event("orchestrion.stopped", {"orchestrion.reason": type(error).__qualname__})
        elif error is not None:
            failed(span, type(error).__qualname__, str(error))
        span.end()


_NOT_FAILURES = (Suspension, StepsStopped, asyncio.CancelledError, LeaseLost)
"""What ends a scope without its work failing: a wait for humans, a worker that puts the
run back, a cancellation (Ctrl-C, a lost race), a run taken by another process."""

_current: ContextVar[_Scope | None] = ContextVar("orchestrion_trace_scope", default=None)
"""The scope the code running here is in (each branch of a gather has its own)."""


def failed(span: Span, kind: str, message: str) -> None:
    span.set_attribute(sc.ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, redact(message)[:1000]))


def parse_traceparent(value: str) -> str:
    """`value` if it is a valid W3C `traceparent`, else a `UserError` saying so."""
    carrier = {"traceparent": value.strip()} if isinstance(value, str) else {}
    span = trace.get_current_span(_PROPAGATOR.extract(carrier))
    if not span.get_span_context().is_valid:
        raise UserError(
            f"traceparent {value!r} is not a W3C trace context: expected "
            "'00-<32 hex trace id>-<16 hex span id>-<2 hex flags>', "
            "e.g. '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'."
        )
    return carrier["traceparent"]


def _traceparent(context: otel.Context | None) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return carrier.get("traceparent")


class Tracing:
    """A runtime's tracer: makes the spans of its runs (see the module's docstring)."""

    __slots__ = ("_started", "capture", "tracer")

    def __init__(self, settings: Instrumentation) -> None:
        self.tracer = trace.get_tracer("orchestrion", tracer_provider=settings.tracer_provider)
        self.capture = settings.capture_content
        self._started: dict[str, _Scope] = {}
        """The execution spans opened for new runs before their records were written."""

    # -- where a run's trace hangs ----------------------------------------------------

    def here(self) -> str | None:
        """The `traceparent` of the span current here (ours, or the caller's), if any."""
        scope = _current.get()
        return _traceparent(scope.open(self.tracer) if scope is not None else None)

    def begin(self, record: RunRecord, runnable: object) -> None:
        """Before a run that starts in this process is written: hang it under the span
        current here, or else under its first execution's span, opened now."""
        record.trace = self.here()
        if record.trace is None:
            scope = self._execution(record, runnable, resumed=False, parent=None)
            record.trace = _traceparent(scope.open(self.tracer))
            self._started[record.id] = scope

    def abandon(self, run_id: str) -> None:
        """The run `begin` was called for was not written after all: its span is dropped
        unended (never exported), not reported as a run that did nothing."""
        self._started.pop(run_id, None)

    def submitted(self, record: RunRecord) -> None:
        """Before a queued run is written: hang it under the span current here, or else
        under a `submit {name}` span (kind PRODUCER) that says when it was queued."""
        record.trace = self.here()
        if record.trace is None:
            attributes: Attributes = {sc.RUN_ID: record.id, sc.RUN_QUEUE: record.queue or ""}
            span = self.tracer.start_span(
                f"submit {record.name}", kind=SpanKind.PRODUCER, attributes=attributes
            )
            span.end()
            record.trace = _traceparent(trace.set_span_in_context(span))

    # -- a run's execution ------------------------------------------------------------

    def execution(self, record: RunRecord, runnable: object, resumed: bool) -> ExecutionSpan:
        """The span of this execution of `record`'s run, opened."""
        scope = self._started.pop(record.id, None)
        if scope is not None:
            return ExecutionSpan(scope, None)
        parent = _PROPAGATOR.extract({"traceparent": record.trace}) if record.trace else None
        scope = self._execution(record, runnable, resumed, parent)
        opened = scope.open(self.tracer)
        return ExecutionSpan(scope, None if record.trace else _traceparent(opened))

    def _execution(
        self, record: RunRecord, runnable: object, resumed: bool, parent: otel.Context | None
    ) -> _Scope:
        name, attributes = _member(record.id, record.name, runnable)
        attributes[sc.RUN_ID] = record.id
        attributes[sc.RUN_RESUMED] = resumed
        return _Scope(name, attributes, None, root=parent if parent is not None else otel.Context())

    def events(self, inner: Events) -> Events:
        """The run's events, each also marked on the span it happens in."""
        return TracedEvents(inner, self)

    async def member(self, run_id: str, key: str, runnable: object, work: Awaitable[T]) -> T:
        """`work`, the run of a member at `key`, in the member's scope."""
        name, attributes = _member(run_id, getattr(runnable, "name", key), runnable)
        attributes[sc.STEP_KEY] = key
        scope = _Scope(name, attributes, _current.get())
        token = _current.set(scope)
        try:
            value = await work
        except BaseException as exc:
            scope.end(exc)
            raise
        finally:
            _current.reset(token)
        scope.end()
        return value

    # -- live steps -------------------------------------------------------------------

    def chat(self, run_id: str, key: str, chain: ModelCalls, request: ModelRequest) -> ChatSpan:
        """The `chat` span of a model request at `key` to `chain`'s models, opened and
        current until its `responded` or `failed` (the model step has no frame of
        ours around its request, traced or not)."""
        first = chain.targets[0].name
        provider, model = provider_and_model(first)
        attributes: Attributes = {
            sc.OPERATION_NAME: sc.CHAT,
            sc.PROVIDER_NAME: provider,
            sc.REQUEST_MODEL: model,
            sc.CONVERSATION_ID: run_id,
            sc.STEP_KEY: key,
        }
        settings = request.settings
        if settings.temperature is not None:
            attributes[sc.REQUEST_TEMPERATURE] = settings.temperature
        if settings.max_tokens is not None:
            attributes[sc.REQUEST_MAX_TOKENS] = settings.max_tokens
        if self.capture:
            attributes[sc.INPUT_MESSAGES] = content.input_messages(request.messages)
            if request.instructions:
                attributes[sc.SYSTEM_INSTRUCTIONS] = content.instructions(request.instructions)
        scope = self._live(f"{sc.CHAT} {model}", attributes, SpanKind.CLIENT)
        return ChatSpan(scope, first, self.capture)

    async def tool(
        self,
        run_id: str,
        key: str,
        tool: Tool,
        call: ToolCall,
        resumed: bool,
        work: Awaitable[ToolResult],
    ) -> ToolResult:
        """`work`, a call of `tool` at `key`, in an `execute_tool` span (current while it
        runs: a tool's own spans, and a delegated worker's, are its children)."""
        attributes: Attributes = {
            sc.OPERATION_NAME: sc.EXECUTE_TOOL,
            sc.TOOL_NAME: tool.name,
            sc.TOOL_CALL_ID: call.id,
            sc.TOOL_TYPE: "function",
            sc.TOOL_EFFECT: tool.effect,
            sc.CONVERSATION_ID: run_id,
            sc.STEP_KEY: key,
        }
        if tool.description:
            attributes[sc.TOOL_DESCRIPTION] = tool.description
        if isinstance(tool.role, Delegate):
            attributes[sc.DELEGATE_TO] = tool.role.worker
        if resumed:
            attributes[sc.TOOL_RESUMED] = True
        if self.capture:
            attributes[sc.TOOL_CALL_ARGUMENTS] = content.text(call.arguments)
        scope = self._live(f"{sc.EXECUTE_TOOL} {tool.name}", attributes)
        result = await self._within(scope, work)
        span = scope.span
        assert span is not None
        if self.capture:
            span.set_attribute(sc.TOOL_CALL_RESULT, content.text(result.content))
        if result.is_error:  # the model is told the call did not work
            failed(span, "tool_error", result.content)
        scope.end()
        return result

    def refused(self, run_id: str, key: str, call: ToolCall, kind: str, message: str) -> None:
        """A call answered with an error without running (an unknown tool, invalid
        arguments, a human's rejection, a limit): an `execute_tool` span ended at once,
        with `error.type` `kind`."""
        attributes: Attributes = {
            sc.OPERATION_NAME: sc.EXECUTE_TOOL,
            sc.TOOL_NAME: call.name,
            sc.TOOL_CALL_ID: call.id,
            sc.TOOL_TYPE: "function",
            sc.CONVERSATION_ID: run_id,
            sc.STEP_KEY: key,
        }
        if self.capture:
            attributes[sc.TOOL_CALL_ARGUMENTS] = content.text(call.arguments)
        scope = self._live(f"{sc.EXECUTE_TOOL} {call.name}", attributes)
        assert scope.span is not None
        failed(scope.span, kind, message)
        scope.end()

    async def step(self, run_id: str, key: str, kind: str, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`, a custom step at `key`, called and awaited in a `step` span (a
        journaled clock read, seed or uuid gets none)."""
        if kind not in _SPAN_KINDS:
            return await work()
        attributes: Attributes = {sc.CONVERSATION_ID: run_id, sc.STEP_KEY: key, sc.STEP_KIND: kind}
        scope = self._live(f"step {keys.last(key)}", attributes)
        value = await self._within(scope, _called(work))
        scope.end()
        return value

    def _live(
        self, name: str, attributes: Attributes, kind: SpanKind = SpanKind.INTERNAL
    ) -> _Scope:
        scope = _Scope(name, attributes, _current.get(), kind=kind)
        scope.open(self.tracer)
        return scope

    @staticmethod
    async def _within(scope: _Scope, work: Awaitable[T]) -> T:
        """`work` awaited with `scope` current, ours and OpenTelemetry's (so spans made
        by a tool's own code, an HTTP client's, are children of it); `scope` is ended
        if it fails."""
        token = _current.set(scope)
        assert scope.context is not None
        attached = otel.attach(scope.context)
        try:
            return await work
        except BaseException as exc:
            scope.end(exc)
            raise
        finally:
            otel.detach(attached)
            _current.reset(token)

    def note(self, name: str, attributes: Attributes) -> None:
        """An event on the span of the scope current here."""
        scope = _current.get()
        if scope is not None:
            scope.open(self.tracer)
            assert scope.span is not None
            scope.span.add_event(name, attributes)


class _Current:
    """A scope made current (ours and OpenTelemetry's) until `leave`."""

    __slots__ = ("attached", "scope", "token")

    def __init__(self, scope: _Scope) -> None:
        assert scope.context is not None
        self.scope = scope
        self.token = _current.set(scope)
        self.attached = otel.attach(scope.context)

    def leave(self) -> Span:
        otel.detach(self.attached)
        _current.reset(self.token)
        span = self.scope.span
        assert span is not None
        return span


class ChatSpan(_Current):
    """The span of one model step, current while it works."""

    __slots__ = ("capture", "first")

    def __init__(self, scope: _Scope, first: str, capture: bool) -> None:
        super().__init__(scope)
        self.first = first
        self.capture = capture

    def responded(self, response: ModelResponse, answered: str) -> None:
        """`answered` (a model of the chain) gave `response`, as journaled."""
        span = self.leave()
        if answered != self.first:  # a fallback model answered
            provider, model = provider_and_model(answered)
            span.update_name(f"{sc.CHAT} {model}")
            span.set_attributes(
                {sc.PROVIDER_NAME: provider, sc.REQUEST_MODEL: model, sc.FALLBACK_FROM: self.first}
            )
        else:
            model = provider_and_model(answered)[1]
        usage = response.usage
        answer: Attributes = {
            sc.RESPONSE_MODEL: response.model or model,
            sc.USAGE_INPUT_TOKENS: usage.input_tokens,
            sc.USAGE_OUTPUT_TOKENS: usage.output_tokens,
        }
        if response.finish_reason:
            answer[sc.RESPONSE_FINISH_REASONS] = (response.finish_reason,)
        if usage.cost:
            answer[sc.USAGE_COST] = usage.cost
        if self.capture:
            answer[sc.OUTPUT_MESSAGES] = content.output_messages(response)
        span.set_attributes(answer)
        self.scope.end()

    def failed(self, error: BaseException) -> None:
        self.leave()
        self.scope.end(error)


class ExecutionSpan:
    """The span of one execution of a run."""

    __slots__ = ("new_trace", "scope")

    def __init__(self, scope: _Scope, new_trace: str | None) -> None:
        self.scope = scope
        self.new_trace = new_trace
        """The run's trace context to store, when the run had none: this span's."""

    async def around(self, work: Awaitable[RunResult[Any]]) -> RunResult[Any]:
        """`work`, the execution, with this span current; ended with its outcome."""
        result = await Tracing._within(self.scope, work)
        span = self.scope.span
        assert span is not None
        usage = result.usage
        span.set_attributes(
            {
                sc.RUN_STATUS: result.status.value,
                sc.USAGE_INPUT_TOKENS: usage.input_tokens,
                sc.USAGE_OUTPUT_TOKENS: usage.output_tokens,
            }
        )
        if usage.cost:
            span.set_attribute(sc.USAGE_COST, usage.cost)
        for interrupt in result.interrupts:
            span.add_event(
                sc.INTERRUPT,
                {
                    "orchestrion.interrupt.id": interrupt.id,
                    "orchestrion.interrupt.kind": interrupt.kind,
                    sc.STEP_KEY: interrupt.key,
                },
            )
        if result.status in (RunStatus.FAILED, RunStatus.STOPPED) and result.error:
            failed(span, str(result.error.get("type")), str(result.error.get("message")))
        self.scope.end()
        return result

    def end(self, error: BaseException | None = None) -> None:
        """End the span if `around` did not: the execution stopped before it (its
        start could not be written), or without a result of its own."""
        self.scope.end(error)


async def _called(work: Callable[[], Awaitable[T]]) -> T:
    return await work()  # called here: its synchronous part runs in the scope too


def _member(run_id: str, name: str, runnable: object) -> tuple[str, Attributes]:
    """The span name and attributes of a run of `runnable` (an agent or a workflow)."""
    if isinstance(runnable, Agent):
        attributes: Attributes = {
            sc.OPERATION_NAME: sc.INVOKE_AGENT,
            sc.AGENT_NAME: name,
            sc.CONVERSATION_ID: run_id,
        }
        if runnable.description:
            attributes[sc.AGENT_DESCRIPTION] = runnable.description
        return f"{sc.INVOKE_AGENT} {name}", attributes
    attributes = {
        sc.OPERATION_NAME: sc.INVOKE_WORKFLOW,
        sc.AGENT_NAME: name,
        sc.CONVERSATION_ID: run_id,
        sc.PATTERN: type(runnable).__name__,
    }
    return f"{sc.INVOKE_WORKFLOW} {name}", attributes


class TracedEvents(Relay):
    """`Events` that also mark the span each happens in: retries, fallbacks, breaker
    changes, loop guards and handoffs are span events."""

    __slots__ = ("tracing",)

    def __init__(self, inner: Events, tracing: Tracing) -> None:
        super().__init__(inner)
        self.tracing = tracing

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        self.inner.retrying(key, kind, target, attempt, error, wait)
        self.tracing.note(
            sc.RETRY,
            {
                "orchestrion.target": target,
                "orchestrion.attempt": attempt,
                "orchestrion.wait_s": wait,
                sc.ERROR_TYPE: type(error).__qualname__,
                "exception.message": redact(str(error)),
            },
        )

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        self.inner.fallback_used(key, failed, used, error)
        self.tracing.note(
            sc.FALLBACK,
            {
                "orchestrion.failed": failed,
                "orchestrion.used": used,
                sc.ERROR_TYPE: type(error).__qualname__,
                "exception.message": redact(str(error)),
            },
        )

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        self.inner.breaker_changed(key, name, old, new)
        self.tracing.note(
            sc.BREAKER,
            {"orchestrion.breaker": name, "orchestrion.from": old, "orchestrion.to": new},
        )

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        self.inner.loop_guard_triggered(key, kind, subject, times, action, replayed)
        if replayed:
            return  # seen when it happened
        self.tracing.note(
            sc.LOOP_GUARD,
            {
                "orchestrion.loop.kind": kind,
                "orchestrion.loop.subject": subject,
                "orchestrion.loop.times": times,
                "orchestrion.loop.action": action,
                sc.STEP_KEY: key,
            },
        )

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        self.inner.transferred(key, source, target, reason, replayed)
        if replayed:
            return  # seen when it happened
        self.tracing.note(
            sc.HANDOFF,
            {
                "orchestrion.from": source,
                sc.TRANSFER_TO: target,
                "orchestrion.reason": redact(reason),
            },
        )
