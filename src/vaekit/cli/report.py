"""`vaekit report RUN [RUN ...]`: the self-contained HTML page of one run, or of several side by side."""

from __future__ import annotations

from pathlib import Path

from .common import say


def cmd_report(args) -> None:
    from ..report import write_report

    out = Path(args.out) if args.out else (Path(args.runs[0]) / "report.html" if len(args.runs) == 1
                                           else Path("report.html"))
    say(write_report(args.runs, out), "report")


def cmd_export(args) -> None:
    from ..export import TOLERANCE, export_onnx
    from ..loading import load

    model = load(args.run)
    out = Path(args.out) if args.out else (Path(args.run) / "onnx" if (Path(args.run) / "model").is_dir()
                                           else Path(f"{Path(args.run).name}-onnx"))
    report = export_onnx(model, out)
    print(f"ONNX graphs of the {model.model_type!r} model (checked with onnxruntime, tolerance {TOLERANCE:g}):")
    for name, result in report.items():
        if isinstance(result, float):
            say(out / f"{name}.onnx", f"{name} (max |diff| {result:.1e})")
        else:
            print(f"  {name:<16} {result}")


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="an HTML page of one run, or of several side by side (offline, self-contained)")
    p.add_argument("runs", nargs="+", help="run folders (from vaekit train)")
    p.add_argument("--out", help="the .html file (default RUN/report.html for one run, else ./report.html)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("export", help="the decoder and encoder as ONNX graphs, checked with onnxruntime")
    p.add_argument("run", help="a run folder, a saved model folder, or a pretrained name")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format today)")
    p.add_argument("--out", help="folder for decoder.onnx and encoder.onnx (default RUN/onnx)")
    p.set_defaults(func=cmd_export)
