"""A model folder's tokenizer conventions: the ids recurlab feeds equal what `tokenizers` gives with
special tokens on (a Llama-style `<s> $A` template), tokenizer_config.json's add_bos_token /
add_eos_token win over the template, and generation, the Inspector and the lm-eval backend agree."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from typer.testing import CliRunner

import recurlab.cli.infer  # noqa: F401  (registers the commands)
from recurlab.cli.app import app
from recurlab.engine import Engine, open_model
from recurlab.errors import ModelFormatError
from recurlab.families.writers import CORPUS, write_random_retrofit
from recurlab.text.bpe import BPETokenizer
from recurlab.text.specials import folder_specials, template_specials

PROMPT = "The lighthouse keeper climbed"
VOCAB = 300


def llama_tokenizer(template: bool = True) -> Tokenizer:
    """Llama's layout: <unk> 0, <s> 1, </s> 2, and a post-processor that puts <s> first."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    if template:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    return tok


def llama_folder(path, add_bos=True, add_eos=None, template=True):
    """A random retrofitted-format folder carrying a Llama tokenizer.json and tokenizer_config.json."""
    folder = write_random_retrofit(path, hidden=32, heads=4, kv_heads=2, mlp=48, vocab=VOCAB, seed=3)
    tok = llama_tokenizer(template)
    tok.save(str(folder / "tokenizer.json"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(bos_token_id=1, eos_token_id=2, pad_token_id=None)
    (folder / "config.json").write_text(json.dumps(cfg))
    conf = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if add_bos is not None:
        conf["add_bos_token"] = add_bos
    if add_eos is not None:
        conf["add_eos_token"] = add_eos
    (folder / "tokenizer_config.json").write_text(json.dumps(conf))
    return folder, tok


def cli_prompt_ids(folder, prompt=PROMPT) -> list[int]:
    res = CliRunner().invoke(app, ["generate", "--model", str(folder), "--prompt", prompt, "--r", "4",
                                   "--init-scale", "0", "--max-new-tokens", "3", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])["prompt_ids"][0]


def test_llama_folder_prompts_start_with_bos_as_tokenizers_gives(tmp_path):
    folder, ref = llama_folder(tmp_path / "rr")
    want = ref.encode(PROMPT, add_special_tokens=True).ids
    assert want[0] == 1 and want[1:] == ref.encode(PROMPT, add_special_tokens=False).ids  # the template's own word
    assert cli_prompt_ids(folder) == want
    opened = open_model(folder)
    eng = Engine(opened.model, opened.tokenizer)
    assert eng.encode(PROMPT) == want
    assert eng.encode("<s>" + PROMPT) == want  # typed by hand: not twice
    # the Inspector reads the same ids
    from recurlab.engine.trace import latent_trace

    tr = latent_trace(opened.model, opened.tokenizer, PROMPT, r=2, init_scale=0.0)
    assert [t["id"] for t in tr["tokens"]] == want and tr["n_prompt"] == len(want)


def test_add_bos_token_false_gets_no_bos_even_with_a_template(tmp_path):
    folder, ref = llama_folder(tmp_path / "rr", add_bos=False)
    assert cli_prompt_ids(folder) == ref.encode(PROMPT, add_special_tokens=False).ids


def test_the_template_decides_where_the_config_is_silent(tmp_path):
    with_template, ref = llama_folder(tmp_path / "a", add_bos=None)
    assert cli_prompt_ids(with_template) == ref.encode(PROMPT, add_special_tokens=True).ids
    plain, ref = llama_folder(tmp_path / "b", add_bos=None, template=False)
    assert cli_prompt_ids(plain) == ref.encode(PROMPT, add_special_tokens=False).ids


def test_add_eos_token_appends_eos(tmp_path):
    folder, ref = llama_folder(tmp_path / "rr", add_eos=True)
    assert cli_prompt_ids(folder) == [1, *ref.encode(PROMPT, add_special_tokens=False).ids, 2]


def test_template_specials_split_prefix_and_suffix():
    tok = llama_tokenizer(template=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    assert template_specials(tok) == ([1], [2])
    assert template_specials(llama_tokenizer(template=False)) == ([], [])


@pytest.mark.parametrize("conf, match", [({"add_bos_token": "yes"}, "add_bos_token must be true or false"),
                                         ({"add_bos_token": True, "bos_token": "<nope>"}, "is not a token"),
                                         ([1], "must hold a JSON object")])
def test_a_malformed_tokenizer_config_is_one_line(tmp_path, conf, match):
    tok = llama_tokenizer()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(conf))
    with pytest.raises(ModelFormatError, match=match):
        folder_specials(tmp_path, BPETokenizer.load(tmp_path / "tokenizer.json"))


def test_lm_eval_context_gets_bos_only_at_its_start(tmp_path):
    import torch
    from lm_eval.api.instance import Instance

    from recurlab.evaluation.lm import RecurlabLM

    folder, ref = llama_folder(tmp_path / "rr")
    lm = RecurlabLM(model=str(folder), r=2, init_scale=0.0)
    ctx, cont = lm._encode_pair("The lighthouse keeper", " climbed", None)
    whole = ref.encode("The lighthouse keeper climbed", add_special_tokens=True).ids
    assert ctx + cont == whole and ctx[0] == 1 and 1 not in cont
    # the loglikelihood is that of the continuation after <s> + context in one plain forward pass
    req = Instance(request_type="loglikelihood", doc={}, arguments=("The lighthouse keeper", " climbed"), idx=0)
    req.task_name = "t"
    (ll, _), = lm.loglikelihood([req])
    with torch.no_grad():
        logp = lm.source.model(torch.tensor([whole]), n_no_grad=2, n_grad=0, init_scale=0.0).logits.log_softmax(-1)
    want = sum(float(logp[0, len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
    assert ll == pytest.approx(want, abs=1e-4)


def test_run_tokenizers_keep_no_specials():
    tok = BPETokenizer.train(CORPUS, vocab_size=300)
    assert (tok.prefix_ids, tok.suffix_ids) == ([], [])
