"""Record the live denoising view as an SVG (the picture in the README).

    python scripts/record_denoise.py runs/names-... docs/denoise.svg --steps 16 --num-samples 6

Runs `sedd_cli.sample` with the same renderables as ``sedd sample --show-intermediate`` and
prints a few frames (start, evenly spaced steps, the denoised result) into a recording Rich
console, then exports it with ``Console.save_svg``.
"""

from __future__ import annotations

import argparse
import io

from rich.console import Console
from rich.text import Text

from sedd_cli.display import state_text
from sedd_cli.sampling import sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--num-samples", type=int, default=6)
    ap.add_argument("--frames", type=int, default=5, help="intermediate frames besides start and end")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=72)
    args = ap.parse_args()

    events = []
    result = sample(
        args.model,
        steps=args.steps,
        num_samples=args.num_samples,
        seed=args.seed,
        device="cpu",
        on_step=events.append,
    )
    from sedd_cli.checkpoints import load_pretrained

    tok = load_pretrained(args.model, "cpu").tokenizer
    mask_id = tok.vocab_size
    wanted = {0, args.steps + 1} | {
        round(k * args.steps / (args.frames + 1)) for k in range(1, args.frames + 1)
    }
    console = Console(
        file=io.StringIO(), record=True, width=args.width, force_terminal=True, color_system="truecolor"
    )
    console.print(
        Text(f"$ sedd sample --steps {args.steps} --show-intermediate -n {args.num_samples}", style="bold")
    )
    for ev in events:
        if ev.step not in wanted:
            continue
        masked = float((ev.x >= mask_id).float().mean())
        head = "denoised" if ev.phase == "denoise" else f"step {ev.step}/{ev.steps}"
        console.print(
            Text(f"{head}  t={ev.t:.3f}  sigma={ev.sigma:.3g}  masked={masked:.0%}", style="bold cyan")
        )
        rows = [
            state_text(r, c, tok, mask_id) for r, c in zip(ev.x.tolist(), ev.changed.tolist(), strict=True)
        ]
        line = Text("  ")
        for k, r in enumerate(rows):
            if k:
                line.append("  ")
            line.append_text(r)
        console.print(line)
    console.print(Text("samples: " + ", ".join(result.texts), style="green"))
    console.save_svg(args.out, title="sedd sample --show-intermediate")


if __name__ == "__main__":
    main()
