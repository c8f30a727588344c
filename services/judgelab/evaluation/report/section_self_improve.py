"""Report section of a ``dpo-self-judge`` study: each arm's gold win rate vs the starting policy
(and vs the reference answers) with bootstrap CIs, per-round DPO numbers, judge agreement."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.bootstrap import WinRate, bootstrap_win_rate
from judgelab.evaluation.report.document import Block, Image, Paragraph, Section, Table
from judgelab.evaluation.report.options import ReportOptions
from judgelab.evaluation.report.plotting import save, single
from judgelab.evaluation.report.self_improve import SelfImproveFile, credits_of, number

TITLE = "Self-improvement: gold win rate of each arm"
FIGURE = "report/self_improve_win_rate.png"
START_ROW = "starting policy"
ROUND_HEADER = (
    "arm",
    "round",
    "judge",
    "judge sees reference",
    "pairs",
    "ties",
    "mean score margin",
    "comparisons (invalid)",
    "comparisons/s",
    "DPO steps",
    "DPO loss first → last",
    "reward margin (mean)",
    "reward accuracy (mean)",
)


def self_improve_section(
    data: SelfImproveFile, options: ReportOptions, run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    versus_start = {arm: _rate(a.get("outcomes"), options) for arm, a in data.arms.items()}
    rows = (data.versus_reference or {}).get("rows") or {}
    versus_reference = {name: _rate(r.get("outcomes"), options) for name, r in rows.items()}
    answer_rows = (data.versus_baseline_answers or {}).get("rows") or {}
    versus_answers = {name: _rate(r.get("outcomes"), options) for name, r in answer_rows.items()}
    extra = [("vs reference answers", versus_reference, "tab:orange")]
    extra += [("vs baseline answers", versus_answers, "tab:green")] if versus_answers else []
    blocks: list[Block] = [_intro(data, options)]
    if any(versus_start.values()) or any(any(rates.values()) for _, rates, _ in extra):
        _plot(versus_start, [e for e in extra if e[1]], data.baseline, options, run_dir / FIGURE)
        blocks.append(Image(FIGURE, TITLE))
    table = _arm_table(data, versus_start, versus_reference, options)
    blocks += [_with_answers(table, data, versus_answers, options), *_rounds(data)]
    blocks += _agreement(data)
    blocks += [Paragraph(f"Note: {note}") for note in data.notes]
    results = {
        "arms": {
            arm: {
                "kind": a.get("kind"),
                "gold_start_mean": number(a.get("gold_start_mean")),
                "gold_end_mean": number(a.get("gold_end_mean")),
                "win_rate": _json(versus_start[arm]),
                "win_rate_vs_reference": _json(versus_reference.get(arm)),
                "win_rate_vs_baseline_answers": _json(versus_answers.get(arm)),
                "rounds": a.get("rounds"),
                "sft": a.get("sft"),
            }
            for arm, a in data.arms.items()
        },
        "versus_reference": None
        if data.versus_reference is None
        else {
            "reference_gold_mean": number(data.versus_reference.get("reference_gold_mean")),
            "starting_policy": _json(versus_reference.get(START_ROW)),
        },
        "versus_baseline_answers": _answers_results(data, versus_answers),
        "judge_agreement": data.judge_agreement,
    }
    return Section(TITLE, tuple(blocks)), results


def _answers_results(
    data: SelfImproveFile, rates: dict[str, WinRate | None]
) -> dict[str, Any] | None:
    found = data.versus_baseline_answers
    if found is None:
        return None
    return {
        "baseline": found.get("baseline"),
        "baseline_gold_mean": number(found.get("baseline_gold_mean")),
        "starting_policy": _json(rates.get(START_ROW)),
    }


def _with_answers(
    table: Table,
    data: SelfImproveFile,
    rates: dict[str, WinRate | None],
    options: ReportOptions,
) -> Table:
    """The arm table with a column for the ``evaluation.baseline_answers`` file, when set."""
    if data.versus_baseline_answers is None:
        return table
    header = (*table.header, f"win rate vs baseline answers [{100 * options.confidence:g}% CI]")
    return Table(header, tuple((*row, _cell(rates.get(row[0]))) for row in table.rows))


def _rate(outcomes: Any, options: ReportOptions) -> WinRate | None:
    credits = credits_of(outcomes)
    if not credits:
        return None
    return bootstrap_win_rate(
        credits,
        resamples=options.bootstrap_resamples,
        seed=options.bootstrap_seed,
        confidence=options.confidence,
    )


def _json(rate: WinRate | None) -> dict[str, Any] | None:
    return None if rate is None else asdict(rate)


def _cell(rate: WinRate | None) -> str:
    return "—" if rate is None else f"{rate.rate:.3f} [{rate.low:.3f}, {rate.high:.3f}]"


def _fmt(value: Any, digits: int = 2) -> str:
    found = number(value)
    return "—" if found is None else f"{found:.{digits}f}"


def _intro(data: SelfImproveFile, options: ReportOptions) -> Paragraph:
    level = f"{100 * options.confidence:g}%"
    return Paragraph(
        f"Each arm's final model and the {data.baseline} answer the held-out prompts; the gold "
        "judge scores every answer and, per prompt, the arm wins when its mean gold score is "
        f"more than 0.5 above, loses when that far below, else ties (ties count half). {level} "
        f"percentile-bootstrap intervals over prompts, {options.bootstrap_resamples} resamples, "
        f"seed {options.bootstrap_seed}. 'vs references': the same against the data's "
        "reference answers scored by gold (Arena-Hard-style baseline answers)."
        + (
            f" 'vs baseline answers': the same against {answers.get('baseline')}."
            if (answers := data.versus_baseline_answers) is not None
            else ""
        )
    )


def _arm_table(
    data: SelfImproveFile,
    versus_start: dict[str, WinRate | None],
    versus_reference: dict[str, WinRate | None],
    options: ReportOptions,
) -> Table:
    level = f"{100 * options.confidence:g}% CI"
    header = (
        "arm",
        "training",
        "gold start → end",
        "win / tie / loss",
        f"win rate vs start [{level}]",
        f"win rate vs references [{level}]",
    )
    rows = []
    for arm, a in data.arms.items():
        outcomes = a.get("outcomes") or {}
        wtl = "/".join(str(outcomes.get(k, "—")) for k in ("win", "tie", "loss"))
        gold = f"{_fmt(a.get('gold_start_mean'))} → {_fmt(a.get('gold_end_mean'))}"
        cells = (arm, str(a.get("kind")), gold, wtl, _cell(versus_start[arm]))
        rows.append((*cells, _cell(versus_reference.get(arm))))
    if START_ROW in versus_reference:
        rows.append((START_ROW, "—", "—", "—", "—", _cell(versus_reference[START_ROW])))
    return Table(header, tuple(rows))


def _rounds(data: SelfImproveFile) -> list[Block]:
    rows = []
    sft = []
    for arm, a in data.arms.items():
        for r in a.get("rounds") or ():
            rows.append(
                (
                    arm,
                    str(r.get("round")),
                    str(r.get("judge") or "policy"),
                    "yes" if r.get("with_reference") else "no",
                    str(r.get("pairs")),
                    str(r.get("ties")),
                    _fmt(r.get("mean_score_margin"), 3),
                    f"{r.get('comparisons')} ({r.get('invalid_comparisons')})",
                    _fmt(r.get("comparisons_per_second"), 1),
                    str(r.get("dpo_steps")),
                    f"{_fmt(r.get('dpo_loss_first'), 3)} → {_fmt(r.get('dpo_loss_last'), 3)}",
                    _fmt(r.get("dpo_reward_margin_mean"), 3),
                    _fmt(r.get("dpo_reward_accuracy_mean"), 2),
                )
            )
        if isinstance(s := a.get("sft"), dict):
            sft.append(
                f"{arm}: SFT on {s.get('examples')} references, {s.get('steps')} steps, loss "
                f"{_fmt(s.get('loss_first'), 3)} → {_fmt(s.get('loss_last'), 3)}."
            )
    blocks: list[Block] = []
    if rows:
        blocks += [
            Paragraph(
                "Per DPO round: best-vs-worst pairs from self-judged candidates (ties skipped), "
                "every ordered comparison batched; DPO loss and reward numbers are TRL's."
            ),
            Table(ROUND_HEADER, tuple(rows)),
        ]
    return blocks + [Paragraph(line) for line in sft]


def _agreement(data: SelfImproveFile) -> list[Block]:
    found = data.judge_agreement
    if not found:
        return []
    rows = []
    for key, label in (("with_reference", "with reference"), ("without_reference", "without")):
        record = found.get(key)
        if not isinstance(record, dict):
            rows.append((label, "—", "not measured", "—"))
            continue
        rate = record.get("agreement") or {}
        interval = f"[{_fmt(rate.get('low'), 3)}, {_fmt(rate.get('high'), 3)}]"
        rows.append(
            (
                label,
                f"{record.get('valid')} / {record.get('pairs')}",
                f"{_fmt(rate.get('rate'), 3)} {interval}",
                _fmt(record.get("position_consistency"), 2),
            )
        )
    note = f" {found['note']}" if found.get("note") else ""
    intro = Paragraph(
        f"Self-judge agreement with gold. Judge: {found.get('judge', 'the self-judge')}; "
        f"{found.get('pairs')} pairs of held-out answers that gold scores more than 0.5 apart; "
        f"credit 1 when the judge prefers gold's choice, ½ on a tie.{note}"
    )
    header = ("judge prompt", "valid pairs", "agreement [95% CI]", "position consistency")
    return [intro, Table(header, tuple(rows))]


def _plot(
    versus_start: dict[str, WinRate | None],
    extra: list[tuple[str, dict[str, WinRate | None], str]],
    baseline: str,
    options: ReportOptions,
    path: Path,
) -> None:
    """``extra``: (label, name -> rate, colour) of each comparison beyond the starting policy."""
    names = list(versus_start)
    for _, rates, _ in extra:
        names += [n for n in rates if n not in names]
    figure, ax = single(TITLE, 8.0, max(3.4, 0.8 * len(names) + 2.4))
    height = 0.76 / (1 + len(extra)) if extra else 0.6
    series = [(f"vs {baseline}", versus_start, "tab:purple")] + extra
    for index, (label, rates, color) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * height
        shown = [(i, rates[n]) for i, n in enumerate(names) if rates.get(n) is not None]
        ys = [i + offset for i, _ in shown]
        values = [r.rate for _, r in shown if r is not None]
        errors = [
            [r.rate - r.low for _, r in shown if r is not None],
            [r.high - r.rate for _, r in shown if r is not None],
        ]
        ax.barh(ys, values, height=height, xerr=errors, color=color, alpha=0.55, capsize=4,
                label=f"{label} (± {100 * options.confidence:g}% CI)")  # fmt: skip
        for y, value in zip(ys, values, strict=True):
            ax.text(0.01, y, f"{value:.2f}", va="center", fontsize=8)
    ax.axvline(0.5, color="black", ls="--", lw=1, label="parity (0.5)")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("gold-judge win rate (tie = ½)")
    ax.set_ylabel("arm")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save(figure, path)
