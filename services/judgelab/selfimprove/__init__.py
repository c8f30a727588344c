"""Reference-guided self-improvement: the policy samples K candidates per prompt, judges every
ordered pair of them itself (reference answer in the judge prompt, or not), and best vs worst
become DPO pairs, for one or more rounds; compared with SFT on the references.

Modules: ``prompts`` (training/eval prompts, reference checks), ``sampling`` (K candidates),
``self_judge`` (batched pairwise self-judging), ``pairs`` (best vs worst), ``dpo`` (one DPO
round with TRL), ``sft_baseline``, ``loop`` (rounds, saved atomically), ``evaluate`` (gold win
rate vs the starting model with bootstrap CIs), ``arms`` (what each planned arm runs).
"""
