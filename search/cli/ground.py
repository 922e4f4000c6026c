"""``loupe ground``: Kosmos-2 captions (or answers) whose phrases come with boxes."""

from __future__ import annotations

import argparse
import json
import os

from loupe.indexer import LoupeError
from loupe.search.cli.common import EXIT_OK, add_db, db_dir, existing_store, shown

NAME = "ground"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe ground`` to the subparsers."""
    p = sub.add_parser(NAME, help="Kosmos-2: describe pictures and box the phrases",
                       description="Ground search hits, image files or video moments with "
                                   "Kosmos-2: a caption (or an answer to --prompt) whose "
                                   "phrases come with boxes in the picture. Answers are cached "
                                   "in the index. Examples: loupe ground 3f2a...c1 (an item id "
                                   "from search --json); loupe ground photo.jpg --draw out.jpg; "
                                   "loupe ground clip.mp4 --at 12.5; loupe ground --video "
                                   "clip.mp4 --every 2 --sheet sheet.jpg")
    p.add_argument("targets", nargs="*", metavar="ITEM_ID_OR_PATH")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="for a video file: the moment to ground")
    p.add_argument("--video", default=None, metavar="PATH",
                   help="ground a video's sampled frames (see --every)")
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                   help="with --video: one frame every SECONDS (1.0) plus shot changes")
    p.add_argument("--prompt", default=None,
                   help='what to ask (default "<grounding>An image of", a caption); free-form '
                        'prompts such as "Find the white fish" get <grounding> added')
    p.add_argument("--model", default=None,
                   help="Kosmos-2 hub id (microsoft/kosmos-2-patch14-224) or a local folder "
                        "(save_pretrained layout)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=None,
                   help="pictures per generate call (default 64 on a GPU, 4 on the CPU)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (64)")
    p.add_argument("--draw", default=None, metavar="PATH",
                   help="write the picture(s) with boxes: a file for one target, else a folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="with --video: write groundings.jsonl and the annotated frames here")
    p.add_argument("--sheet", default=None, metavar="FILE",
                   help="with --video: write a contact sheet of the frames with their boxes")
    p.add_argument("--no-cache", action="store_true", help="run the model even if cached")
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    add_db(p)


def print_grounding(label: str, g, cached: bool) -> None:
    """A target, its caption, and each phrase with its boxes."""
    print(f"{shown(label)}{' (cached)' if cached else ''}")
    print(f"  {g.caption}")
    for e in g.entities:
        boxes = "; ".join(", ".join(f"{v:.0f}" for v in b) for b in e.boxes)
        print(f"    {e.phrase.strip()}: [{boxes}]")


def run(args: argparse.Namespace) -> int:
    """Ground the targets (or a video's frames) and print, draw or write the answers."""
    from loupe.search.explain import (
        draw_grounding,
        ground_targets,
        ground_video_to_dir,
        load_grounder,
        normalise_prompt,
        resolve_target,
        target_image,
    )

    if bool(args.video) == bool(args.targets):
        raise LoupeError("give ITEM_ID_OR_PATH... or --video PATH (one of the two)")
    if (args.batch_size is not None and args.batch_size < 1) or args.max_new_tokens < 1:
        raise LoupeError("--batch-size and --max-new-tokens must be at least 1")
    prompt = normalise_prompt(args.prompt)  # a bad prompt fails before the model loads
    store = existing_store(db_dir(args))
    if args.video:
        if not args.every > 0:
            raise LoupeError("--every must be a positive number of seconds")
        if not os.path.isfile(args.video):
            raise LoupeError(f"no such video: {args.video}")
    else:
        targets = [resolve_target(t, store, args.at) for t in args.targets]
    grounder = load_grounder(args.model, args.device)
    # Generation is launch-bound on a GPU: 64 frames per call ground ~48x faster than 1.
    batch_size = args.batch_size or (64 if grounder.device.startswith("cuda") else 4)
    if args.video:
        lines = []
        for res in ground_video_to_dir(grounder, args.video, args.every, prompt, store,
                                       batch_size, args.max_new_tokens, not args.no_cache,
                                       out_dir=args.out, sheet=args.sheet):
            lines.append(res.as_dict())
            if not args.json:
                print_grounding(res.target.label, res.grounding, res.cached)
        if args.json:
            print(json.dumps(lines, indent=2, ensure_ascii=False))
        if not lines:
            raise LoupeError(f"no frame of {args.video} could be decoded")
        return EXIT_OK
    results = ground_targets(grounder, targets, prompt, store, batch_size,
                             args.max_new_tokens, not args.no_cache)
    if args.draw:
        one = len(results) == 1 and not os.path.isdir(args.draw)
        if not one:
            os.makedirs(args.draw, exist_ok=True)
        for i, r in enumerate(results):
            drawn = draw_grounding(target_image(r.target), r.grounding)
            name = f"{i:03d}_{os.path.splitext(os.path.basename(r.target.path))[0]}.jpg"
            drawn.save(args.draw if one else os.path.join(args.draw, name), quality=92)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            print_grounding(r.target.label, r.grounding, r.cached)
    return EXIT_OK
