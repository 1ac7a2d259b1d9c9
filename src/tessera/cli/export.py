"""`tessera export hf CHECKPOINT OUT/`: write a trained GPT as a Hugging Face model folder."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model to another ecosystem's format"
    )
    formats = parser.add_subparsers(dest="export_format", metavar="FORMAT")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    hf = formats.add_parser(
        "hf",
        help="Hugging Face transformers folder (GPT-2 or Llama architecture)",
        description="Write config.json, model.safetensors and the tokenizer so that "
        "transformers' AutoModelForCausalLM/AutoTokenizer load the model without Tessera.",
    )
    hf.add_argument("checkpoint", help="run folder or folder with model.safetensors")
    hf.add_argument("out", help="output folder")
    hf.add_argument(
        "--check", action="store_true", help="load the export with transformers and compare logits"
    )
    hf.set_defaults(func=run_hf)


def run_hf(args: argparse.Namespace) -> int:
    from tessera.models.gpt.checkpoint import load_gpt
    from tessera.models.gpt.hf_export import architecture_name, export_hf, position_limit

    model = load_gpt(args.checkpoint)
    out = export_hf(model, args.out, trained_from=args.checkpoint)
    print(f"wrote {architecture_name(model)} model to {out}")
    print(f"note: {position_limit(model.config)}")
    if not (out / "README.md").is_file():
        print(
            "no training provenance found (train with `callbacks: {provenance: {}}`): no model card"
        )
    if args.check:
        difference = compare_logits(model, out)
        print(f"largest logit difference vs transformers: {difference:.2e}")
        if difference > 1e-4:
            print("error: the export does not reproduce the model's logits")
            return 1
    return 0


def compare_logits(model: object, folder: object) -> float:
    """Largest absolute logit difference between our model and the exported one."""
    import torch
    from transformers import AutoModelForCausalLM

    from tessera.models.hf_folder import from_folder

    hf_model = from_folder(AutoModelForCausalLM, folder, "--check", dtype=torch.float32).eval()
    stored = getattr(torch, (getattr(model, "hf_origin", None) or {}).get("dtype", "float32"))
    if stored != torch.float32:  # an imported model exports in its checkpoint's dtype
        for parameter in model.parameters():
            parameter.data = parameter.data.to(stored).float()
    length = min(64, model.config.max_seq_len)
    ids = torch.randint(
        0, model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ours = model.run(ids)
        theirs = hf_model(ids).logits
    return float((ours - theirs).abs().max())
