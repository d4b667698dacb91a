"""Generate text after a prompt, from a trained run.

    python -m experiments.generate run=RUN_DIR prompt="jack and" length=6 strategy=beam beams=4

Strategies (``strategy=``): ``greedy`` (the tutorials' generate_seq), ``sample`` (softmax with a
``temperature``), ``top_k`` (sampling from the ``k`` most probable tokens), ``top_p`` (sampling
from the smallest set of tokens whose probability reaches ``p``), ``beam`` (beam search with
``beams`` beams; the best beam is printed, or the ``show`` best). Sampling is reproducible with
``seed``. The prompt is fitted to the model's trained window the way its framing was trained
(left-padded or truncated); unknown words or characters become the unknown token, with a warning.
"""

from __future__ import annotations

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, parse, setup

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("prompt", str, None, "the text to continue", required=True),
    Arg("length", int, 20, "tokens to generate (words or characters)"),
    Arg("strategy", str, "greedy", "greedy | sample | top_k | top_p | beam"),
    Arg("temperature", float, 1.0, "sample, top_k, top_p: softmax temperature"),
    Arg("k", int, 10, "top_k: how many tokens to sample from"),
    Arg("p", float, 0.9, "top_p: probability mass to sample from"),
    Arg("beams", int, 4, "beam: beam width"),
    Arg("show", int, 1, "beam: print this many best beams, with their log-probabilities"),
    Arg("seed", int, 0, "random seed for the sampling strategies"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.generate", __doc__, SPEC, argv)
    setup()
    from lmjax.infer.decode import STRATEGIES, beam_search, generate_text
    from lmjax.infer.generate import encode_prompt
    from lmjax.errors import ConfigError
    from lmjax.infer.load import load_run, parse_checkpoint

    if a["strategy"] not in STRATEGIES:
        raise ConfigError(f"unknown strategy {a['strategy']!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")
    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    vocab, prompt = loaded.vocab, a["prompt"]
    if loaded.cfg.data.lowercase:
        prompt = prompt.lower()
    if a["strategy"] == "beam" and a["show"] > 1:
        ids = encode_prompt(vocab, prompt)
        for b in beam_search(loaded.predict, ids, a["length"], loaded.seq_len,
                             max(a["beams"], a["show"]))[:a["show"]]:
            print(f"{b.log_prob:9.3f}  {vocab.join(vocab.tokenize(prompt) + vocab.decode(b.ids))}")
        return
    print(generate_text(loaded.predict, vocab, prompt, a["length"], loaded.seq_len,
                        strategy=a["strategy"], temperature=a["temperature"], k=a["k"],
                        p=a["p"], beams=a["beams"], seed=a["seed"]))


if __name__ == "__main__":
    main()
