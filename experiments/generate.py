"""Generate text after a prompt (or from nothing), from a trained run.

    python -m experiments.generate run=RUN_DIR prompt="jack and" length=6 strategy=beam beams=4
    python -m experiments.generate run=RUN_DIR strategy=top_p num_samples=5   # no prompt

Strategies (``strategy=``): ``greedy`` (the tutorials' generate_seq), ``sample`` (softmax with a
``temperature``), ``top_k`` (sampling from the ``k`` most probable tokens), ``top_p`` (sampling
from the smallest set of tokens whose probability reaches ``p``), ``beam`` (beam search with
``beams`` beams; the best beam is printed, or the ``show`` best). Sampling is reproducible with
``seed``; ``num_samples=N`` draws N samples (seeds seed .. seed+N-1), one per line (separated by
``---`` lines when a sample spans lines). The prompt is fitted to the model's trained window the
way its framing was trained (left-padded or truncated); unknown words or characters become the
unknown token, with a warning. Without a prompt a char model starts at the start of a line
(after a line break) and a word model from an empty (all-padding) window, and only the
generated text is printed.
"""

from __future__ import annotations

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, parse, setup

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("prompt", str, "", "the text to continue (none: start of a line)"),
    Arg("length", int, 20, "tokens to generate (words or characters)"),
    Arg("strategy", str, "greedy", "greedy | sample | top_k | top_p | beam"),
    Arg("temperature", float, 1.0, "sample, top_k, top_p: softmax temperature"),
    Arg("k", int, 10, "top_k: how many tokens to sample from"),
    Arg("p", float, 0.9, "top_p: probability mass to sample from"),
    Arg("beams", int, 4, "beam: beam width"),
    Arg("show", int, 1, "beam: print this many best beams, with their log-probabilities"),
    Arg("seed", int, 0, "random seed for the sampling strategies"),
    Arg("num_samples", int, 1, "sample, top_k, top_p: how many samples (seeds seed, seed+1..)"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.generate", __doc__, SPEC, argv)
    setup()
    from lmjax.errors import ConfigError
    from lmjax.fmt import num
    from lmjax.infer.decode import STRATEGIES, beam_search, decode
    from lmjax.infer.generate import encode_prompt, start_context
    from lmjax.infer.load import load_run, parse_checkpoint

    if a["strategy"] not in STRATEGIES:
        raise ConfigError(f"unknown strategy {a['strategy']!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")
    if a["num_samples"] < 1:
        raise ConfigError(f"num_samples must be >= 1, got {a['num_samples']}")
    if a["num_samples"] > 1 and a["strategy"] in ("greedy", "beam"):
        raise ConfigError(f"num_samples={a['num_samples']} needs a sampling strategy (sample, "
                          f"top_k or top_p): {a['strategy']} gives the same text every time "
                          f"(beam: show=N prints the N best)")
    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    vocab, prompt = loaded.vocab, a["prompt"]
    if loaded.cfg.data.lowercase:
        prompt = prompt.lower()
    ids = encode_prompt(vocab, prompt) if prompt else start_context(vocab)
    head = vocab.tokenize(prompt)
    if a["strategy"] == "beam" and a["show"] > 1:
        for b in beam_search(loaded.predict, ids, a["length"], loaded.seq_len,
                             max(a["beams"], a["show"]))[:a["show"]]:
            print(f"{num(b.log_prob, 3):>9}  {vocab.join(head + vocab.decode(b.ids))}")
        return
    texts = []
    for i in range(a["num_samples"]):  # sample i draws with seed + i
        new = decode(loaded.predict, ids, a["length"], loaded.seq_len, strategy=a["strategy"],
                     temperature=a["temperature"], k=a["k"], p=a["p"], beams=a["beams"],
                     seed=a["seed"] + i)
        texts.append(vocab.join(head + vocab.decode(new)))
    spans_lines = len(texts) > 1 and any("\n" in t for t in texts)
    print(("\n---\n" if spans_lines else "\n").join(texts))

if __name__ == "__main__":
    main()
