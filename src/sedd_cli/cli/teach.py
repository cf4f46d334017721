"""`sedd tokenize, noise, cipher-demo, loss`: one idea of the method each, on real text.

The work is done by `sedd_cli.demos` (plain functions returning dataclasses); this module parses
options and renders the results as Rich tables on stdout (they are the result), or as one JSON
document with ``--json``. In a pipe Rich prints the same tables without colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import DeviceOpt, JsonOpt, SeedOpt, command, print_json, read_text_arg

if TYPE_CHECKING:
    from rich.console import Console

TextArg = Annotated[
    str, typer.Argument(help="The text ('-' reads standard input; one trailing newline is dropped).")
]
TokenizerOpt = Annotated[
    str,
    typer.Option(
        "--tokenizer",
        help=(
            "gpt2 | char | byte | MODEL (a model, run or checkpoint directory: its tokenizer.json). "
            "'char' without a model builds its vocabulary from the text itself."
        ),
    ),
]
TimeOpt = Annotated[
    float,
    typer.Option(
        "-t", "--time", "--timestep", help="Diffusion time in [0, 1]: 0 = clean text, 1 = all noise."
    ),
]

MAX_TABLE_TOKENS = 64  # longer texts get the summary lines only (--json has every token)


def _text(text: str) -> str:
    """The TEXT argument: '-' reads stdin, dropping one trailing newline (echo adds it)."""
    if text != "-":
        return text
    data = read_text_arg(text)
    if data.endswith("\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith("\n") else data


def _console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


def _piece(p: str) -> str:
    """A token piece made visible: quoted, with newlines and tabs escaped."""
    return '"' + p.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _ids(ids: list[int], limit: int = 40) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return f"[{shown}{', ...' if len(ids) > limit else ''}] ({len(ids)} ids)"


def _kv(console: Console, label: str, value: Any, style: str = "") -> None:
    from rich.text import Text

    line = Text(f"{label:<12}", style="bold")
    line.append(str(value), style=style)
    console.print(line)


def _positions(positions: list[int], n: int) -> str:
    if not positions:
        return f"none (0 of {n} tokens)"
    shown = ", ".join(map(str, positions[:40])) + (", ..." if len(positions) > 40 else "")
    return f"{shown} ({len(positions)} of {n} tokens)"


# --- tokenize -----------------------------------------------------------------------------------


@command(
    "tokenize",
    help_examples=(
        'sedd tokenize "Applying diffusion to text is kind of crazy"',
        'sedd tokenize "hello world" --tokenizer char',
        "echo 'naïve café' | sedd tokenize - --tokenizer byte --json",
        "sedd tokenize Olivia --tokenizer runs/names",
    ),
)
def tokenize(text: TextArg, tokenizer: TokenizerOpt = "gpt2", json_out: JsonOpt = False) -> None:
    """Show how TEXT becomes token ids: a table of index, id and piece, with the counts.

    Pieces that are not valid UTF-8 on their own (a character split over several tokens) are
    shown escaped, e.g. \\xe6\\x97.
    """
    from ..demos import tokenize_text

    result = tokenize_text(_text(text), tokenizer)
    if json_out:
        print_json({"command": "tokenize", **result.to_dict()})
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"{result.tokenizer} tokenizer (V = {result.vocab_size})", title_justify="left")
    table.add_column("index", justify="right")
    table.add_column("id", justify="right", style="cyan")
    table.add_column("piece")
    for n, (i, p) in enumerate(zip(result.ids, result.pieces, strict=True)):
        table.add_row(str(n), str(i), _piece(p))
    console.print(table)
    console.print(
        f"{result.n_tokens} tokens, {result.n_chars} characters, {result.n_bytes} UTF-8 bytes "
        f"({result.n_chars / result.n_tokens:.2f} characters per token)"
    )


# --- noise --------------------------------------------------------------------------------------


def _header(console: Console, graph: str, schedule: str, mask_id: int | None, seed: int) -> None:
    what = f"absorbing (mask id {mask_id})" if graph == "absorb" else "uniform (replace by a random id)"
    _kv(console, "graph", what)
    _kv(console, "schedule", schedule)
    _kv(console, "seed", seed)


@command(
    "noise",
    help_examples=(
        'sedd noise "Applying diffusion to text is kind of crazy" -t 0.35',
        'sedd noise "Applying diffusion to text is kind of crazy" -t 0.35 --drop-mask --seed 3',
        'sedd noise "hello world" --tokenizer char --frames 6',
        'sedd noise "hello world" --graph uniform -t 0.7 --json',
    ),
)
def noise(
    text: TextArg,
    t: TimeOpt = 0.35,
    graph: Annotated[
        str,
        typer.Option(
            "--graph",
            help="absorb (tokens jump to the mask; LogLinear schedule) | uniform (tokens jump to a random "
            "id; Geometric schedule 1e-4..20, as the paper pairs them).",
        ),
    ] = "absorb",
    seed: SeedOpt = 0,
    tokenizer: TokenizerOpt = "gpt2",
    show_mask: Annotated[
        bool,
        typer.Option(
            "--show-mask/--drop-mask",
            help="Draw each masked token as █ (default), or drop it from the text: the seed's view, "
            "where an absorbed token decodes to nothing.",
        ),
    ] = True,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames",
            help="Also show the text at N times from 0 to 1 (2 <= N <= 1000) with one coupled draw "
            "(so the corruption only grows).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the forward process on TEXT at time t: each token moves with probability 1 - e^(-sigma(t)).

    Shows t, sigma(t), the move chance, which positions flipped (the Hamming distance), the
    corrupted ids and the decoded text, with each mask drawn as █ (or, with --drop-mask, dropped
    as in the seed's demo, where an absorbed token decodes to nothing).
    """
    from ..demos import noise_text

    result = noise_text(_text(text), t, graph=graph, tokenizer=tokenizer, seed=seed, frames=frames)
    if json_out:
        print_json({"command": "noise", **result.to_dict()})
        return
    from rich.table import Table

    console = _console()
    n = len(result.ids)
    _header(console, result.graph, result.schedule, result.mask_id, result.seed)
    _kv(
        console,
        "t",
        f"{result.t:g}   sigma(t) = {result.sigma:.6g}   dsigma(t) = {result.dsigma:.6g}   "
        f"move chance 1 - e^-sigma = {result.move_chance:.6g}",
    )
    _kv(console, "text", result.text)
    _kv(console, "ids", _ids(result.ids), "cyan")
    _kv(console, "noisy ids", _ids(result.noisy_ids), "cyan")
    _kv(console, "flipped", _positions(result.flipped, n) + f"; Hamming distance {result.hamming}")
    _kv(console, "noisy text", result.noisy_text_shown if show_mask else result.noisy_text, "bold yellow")
    if n <= MAX_TABLE_TOKENS and not frames:
        table = Table(show_edge=False)
        for name, justify in (("pos", "right"), ("id", "right"), ("piece", "left")):
            table.add_column(name, justify=justify)
        table.add_column("noisy id", justify="right")
        table.add_column("noisy piece")
        flipped = set(result.flipped)
        for pos in range(n):
            style = "bold red" if pos in flipped else ""
            table.add_row(
                str(pos),
                str(result.ids[pos]),
                _piece(result.pieces[pos]),
                str(result.noisy_ids[pos]),
                _piece(result.noisy_pieces[pos]),
                style=style,
            )
        console.print(table)
    if result.frames:
        table = Table(title="one coupled draw at every t", title_justify="left", show_edge=False)
        table.add_column("t", justify="right")
        table.add_column("move chance", justify="right")
        table.add_column("flipped", justify="right")
        table.add_column("noisy text", overflow="fold")
        for f in result.frames:
            table.add_row(
                f"{f.t:.3f}",
                f"{f.move_chance:.4f}",
                f"{f.hamming}/{n}",
                f.noisy_text_shown if show_mask else f.noisy_text,
            )
        console.print(table)


# --- cipher-demo --------------------------------------------------------------------------------


@command(
    "cipher-demo",
    help_examples=(
        'sedd cipher-demo "Applying diffusion to text is kind of crazy" -n 1',
        'sedd cipher-demo "Applying diffusion to text is kind of crazy" -n 3 -t 0.35',
        'sedd cipher-demo "hello world" --tokenizer char --json',
    ),
)
def cipher_demo(
    text: TextArg,
    shift: Annotated[
        int, typer.Option("-n", "--shift", "--num-shift", help="Add SHIFT to every id (mod V).")
    ] = 1,
    t: TimeOpt = 0.35,
    tokenizer: TokenizerOpt = "gpt2",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Why not diffuse by nudging ids? Shift every token id by SHIFT (a Caesar cipher) and decode.

    Beside it: the absorbing diffusion at time t (each token masked with probability
    1 - e^(-sigma(t)) = (1 - 0.001) t), and the shift applied only at the positions diffusion
    masked, i.e. a corruption with the same Hamming distance. A change of 1 in every id ruins
    the text (ids carry no notion of closeness); diffusion changes only some tokens and marks
    where (█), whereas the same number of shifted tokens hides its damage among plausible words.
    """
    from ..demos import cipher_text

    result = cipher_text(_text(text), shift, tokenizer, seed, t=t)
    if json_out:
        print_json({"command": "cipher-demo", **result.to_dict()})
        return
    from rich.table import Table

    console = _console()
    n = len(result.ids)
    _kv(console, "tokenizer", f"{result.tokenizer} (V = {result.vocab_size})")
    _kv(console, "text", result.text)
    _kv(console, "ids", _ids(result.ids), "cyan")
    _kv(console, "shifted ids", _ids(result.shifted_ids), "cyan")
    table = Table(show_edge=False)
    table.add_column("corruption")
    table.add_column("changed", justify="right")
    table.add_column("decoded text", overflow="fold")
    table.add_row("original", f"0/{n}", result.text)
    table.add_row(f"every id + {result.shift} (mod V)", f"{result.shifted_hamming}/{n}", result.shifted_text)
    table.add_row(
        f"diffusion, absorbing, t = {result.t:g}",
        f"{result.diffused_hamming}/{n}",
        result.diffused_text,
        style="bold yellow",
    )
    table.add_row(
        f"+ {result.shift} at those {result.diffused_hamming} positions only",
        f"{result.partial_hamming}/{n}",
        result.partial_text,
    )
    console.print(table)
    console.print(
        f"diffusion masks each token with probability 1 - e^-sigma = {result.move_chance:.4g}; "
        f"seed {result.seed} masked positions {result.diffused_positions}"
    )


# --- loss ---------------------------------------------------------------------------------------


@command(
    "loss",
    help_examples=(
        'sedd loss "Applying diffusion to text is kind of crazy" -m louaaron/sedd-small -t 0.5',
        "sedd loss olivia -m runs/names -t 0.7 --top-k 3",
        'sedd loss "hello world" -m runs/tiny --seed 1 --json',
    ),
)
def loss(
    text: TextArg,
    model: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--model",
            help="Run directory, checkpoint, model folder or hub id (default: the newest run under ./runs).",
        ),
    ] = None,
    t: TimeOpt = 0.5,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    top_k: Annotated[int, typer.Option("--top-k", help="Predictions shown per masked position.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Corrupt TEXT at time t, run the model, and show what the score-entropy loss sees.

    Prints the log-score shape [batch, length, D], the masked positions, the model's top
    predictions there with probabilities p(x0 = j | xt) = e(sigma) exp(s_j) (normalised over the
    V real tokens for display), the per-token score entropy l and the total loss
    sum dsigma(t) l in nats (sedd-spec §2.4-2.5). An untrained model costs (1/t) log V per mask.
    """
    from ..checkpoints import load_pretrained
    from ..demos import check_t, check_text, loss_text

    body = check_text(_text(text))
    check_t(t)  # check the cheap inputs before loading the model
    pretrained = load_pretrained(model, device)
    result = loss_text(body, pretrained, t, seed=seed, top_k=top_k)
    if json_out:
        print_json({"command": "loss", **result.to_dict()})
        return
    from rich.table import Table

    console = _console()
    n = len(result.ids)
    step = f"step {pretrained.step}, " if pretrained.step is not None else ""
    _kv(console, "model", f"{result.model} ({step}{pretrained.weights} weights, {pretrained.device})")
    _kv(console, "graph", f"{result.graph} · {result.schedule} · seed {result.seed}")
    _kv(
        console,
        "t",
        f"{result.t:g}   sigma(t) = {result.sigma:.6g}   dsigma(t) = {result.dsigma:.6g}   "
        f"move chance = {result.move_chance:.6g}",
    )
    _kv(console, "text", result.text)
    _kv(console, "noisy text", result.noisy_text, "bold yellow")
    D = result.log_score_shape[-1]
    dim = f"D = V + 1 = {D}" if result.graph == "absorb" else f"D = V = {D}"
    _kv(console, "log-score", f"s = model(xt, sigma): shape {result.log_score_shape} (batch, length, {dim})")
    label = "masked" if result.graph == "absorb" else "changed"
    _kv(console, label, _positions(result.corrupted, n))
    if result.positions:
        table = Table(show_edge=False)
        table.add_column("pos", justify="right")
        table.add_column("true")
        table.add_column("p(true)", justify="right")
        table.add_column("rank", justify="right")
        if result.graph == "absorb":
            table.add_column("mass", justify="right")
        table.add_column("l", justify="right")
        table.add_column("dsigma·l", justify="right")
        table.add_column("top-k (prob)", overflow="fold")
        for p, mass in list(zip(result.positions, result.mass, strict=True))[:MAX_TABLE_TOKENS]:
            top = "  ".join(f"{_piece(c.piece)} {c.prob:.3f}" for c in p.top)
            cells = [str(p.position), _piece(p.x0_piece), f"{p.true_prob:.4f}", str(p.true_rank)]
            if result.graph == "absorb":
                cells.append(f"{mass:.3f}")
            cells += [f"{p.score_entropy:.4f}", f"{p.weighted:.4f}", top]
            table.add_row(*cells)
        console.print(table)
        if len(result.positions) > MAX_TABLE_TOKENS:
            console.print(f"... {len(result.positions) - MAX_TABLE_TOKENS} more positions in --json")
    console.print(
        f"loss = sum dsigma(t)·l = {result.loss:.6g} nats ({result.loss_per_token:.6g} nats per token over "
        f"{n} tokens)",
        style="bold",
    )
    console.print(f"probabilities: {result.prob_note}", style="dim")
