"""`dynasor-sgl chat`: a terminal chat against a running router, with early exit per reply.

Owns the conversation loop and what the user sees: the reply as it streams, then one line on
how it ended (the probes agreed, the budget ran out, or the model finished) and the tokens
that saved. Speaks the router's OpenAI route through the official `openai` SDK (imported on
use: it is slow to import); the early exit itself is the router's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from dynasor_sgl.cli.common import ROUTER_ENV
from dynasor_sgl.protocol import API_KEY_ENV, DEFAULT_ROUTER_URL
from dynasor_sgl.router.effort import EFFORTS

QUIT = ("/quit", "/exit")
_WHY = {
    "certain": "early exit: the probes agreed",
    "budget": "budget spent during reasoning: a final probe gave the answer",
    "completed": "the model finished on its own",
}


@dataclass(frozen=True)
class Reply:
    text: str
    usage: dict[str, Any] | None


def summary(usage: dict[str, Any] | None) -> str:
    """The one line after a reply: how it ended and what it cost or saved."""
    dyn = (usage or {}).get("dynasor")
    if not isinstance(dyn, dict):
        return "[no early exit on this reply]"
    reason = str(dyn.get("exit_reason"))
    why = _WHY.get(reason, reason)
    reasoning = (usage or {}).get("completion_tokens_details", {}).get("reasoning_tokens", 0)
    saved = int(dyn.get("tokens_saved") or 0)
    cost = f"{reasoning} reasoning + {dyn.get('probe_tokens', 0)} probe tokens"
    verdict = f"~{saved} of {dyn.get('budget')} tokens saved" if saved > 0 else "nothing saved"
    return f"[{why} after {cost}; {verdict}]"


def _ask(client: Any, messages: list[dict[str, str]], options: dict[str, Any]) -> Reply:
    """Stream one reply to the terminal; returns its text and usage."""
    stream = client.chat.completions.create(
        model=options["model"],
        messages=messages,
        max_completion_tokens=options["max_tokens"],
        temperature=options["temperature"],
        stream=True,
        stream_options={"include_usage": True},  # the exit and saving shown after the reply
        extra_body={"reasoning_effort": options["effort"]},
    )
    parts: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
            click.echo(parts[-1], nl=False)
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    click.echo()
    return Reply("".join(parts), usage)


def _turn(client: Any, messages: list[dict[str, str]], options: dict[str, Any]) -> None:
    import openai

    try:
        reply = _ask(client, messages, options)
    except openai.APIConnectionError as exc:
        raise click.ClickException(f"cannot reach the router at {options['router']}") from exc
    except openai.APIStatusError as exc:
        message = f"the router answered {exc.status_code}: {exc.message}"
        raise click.ClickException(message) from exc
    messages.append({"role": "assistant", "content": reply.text})
    click.echo(summary(reply.usage), err=True)


@click.command("chat", context_settings={"show_default": True})
@click.option("--router", envvar=ROUTER_ENV, default=DEFAULT_ROUTER_URL, help="Router URL.")
@click.option(
    "--effort",
    type=click.Choice(sorted(EFFORTS)),
    default="medium",
    help="reasoning_effort: low exits soonest, high waits for more agreeing probes; none: off.",
)
@click.option("--api-key", envvar=API_KEY_ENV, default=None, help="The router's API key.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, help="Token budget.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.6)
@click.option("--model", default="default", help="The model name sent (the router's workers).")
@click.option("--system", default=None, help="A system message to start the chat with.")
@click.option("--once", "question", default=None, help="Ask this one question, then exit.")
def chat_command(system: str | None, question: str | None, **options: Any) -> None:
    """Chat with the served model; each reply exits early when its probes agree.

    Type a message and press Enter; /quit or Ctrl-D ends the chat.
    """
    import openai

    key = options["api_key"] or "none"  # the SDK insists on a key; the router may need none
    client = openai.OpenAI(base_url=options["router"].rstrip("/") + "/v1", api_key=key)
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        text = question if question is not None else _read_line()
        if text is None or text.strip() in QUIT:
            return
        messages.append({"role": "user", "content": text})
        _turn(client, messages, options)
        if question is not None:
            return


def _read_line() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        click.echo()
        return None
