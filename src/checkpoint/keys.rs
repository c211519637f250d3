//! The whole Hugging Face ↔ burnbert parameter-name mapping, as one declarative table.
//!
//! Each row maps a module-path prefix of a transformers checkpoint to the burnbert module path
//! it loads into; `{i}` stands for a layer index. Leaf names (`weight`, `bias`) are carried over
//! unchanged; burn-store's PyTorch adapter turns LayerNorm `weight`/`bias` into `gamma`/`beta`
//! and transposes Linear weights. Rows are tried in order and the first match wins, so more
//! specific prefixes come first. The same rows are read right-to-left when saving.

use crate::model::Architecture;

/// `(architecture, Hugging Face prefix, burnbert prefix)`.
type Row = (Architecture, &'static str, &'static str);

use Architecture::{Albert, Bert, DebertaV2, DistilBert, Electra, ModernBert, Roberta};

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // BERT: transformers' BertForSequenceClassification.
    (Bert, "bert.embeddings.LayerNorm.",                          "embeddings.layer_norm."),
    (Bert, "bert.embeddings.",                                    "embeddings."),
    (Bert, "bert.encoder.layer.{i}.attention.self.",              "encoder.layer.{i}.attention.self_attn."),
    (Bert, "bert.encoder.layer.{i}.attention.output.LayerNorm.",  "encoder.layer.{i}.attention.output.layer_norm."),
    (Bert, "bert.encoder.layer.{i}.output.LayerNorm.",            "encoder.layer.{i}.output.layer_norm."),
    (Bert, "bert.encoder.",                                       "encoder."),
    (Bert, "bert.pooler.",                                        "pooler."),
    (Bert, "classifier.",                                         "head.classifier."),
    // RoBERTa: RobertaForSequenceClassification (its head is `RobertaClassificationHead`).
    (Roberta, "roberta.embeddings.LayerNorm.",                          "embeddings.layer_norm."),
    (Roberta, "roberta.embeddings.",                                    "embeddings."),
    (Roberta, "roberta.encoder.layer.{i}.attention.self.",              "encoder.layer.{i}.attention.self_attn."),
    (Roberta, "roberta.encoder.layer.{i}.attention.output.LayerNorm.",  "encoder.layer.{i}.attention.output.layer_norm."),
    (Roberta, "roberta.encoder.layer.{i}.output.LayerNorm.",            "encoder.layer.{i}.output.layer_norm."),
    (Roberta, "roberta.encoder.",                                       "encoder."),
    (Roberta, "classifier.dense.",                                      "head.pre_classifier."),
    (Roberta, "classifier.out_proj.",                                   "head.classifier."),
    // DistilBERT: DistilBertForSequenceClassification.
    (DistilBert, "distilbert.embeddings.LayerNorm.",                   "embeddings.layer_norm."),
    (DistilBert, "distilbert.embeddings.",                             "embeddings."),
    (DistilBert, "distilbert.transformer.layer.{i}.attention.q_lin.",  "encoder.layer.{i}.attention.self_attn.query."),
    (DistilBert, "distilbert.transformer.layer.{i}.attention.k_lin.",  "encoder.layer.{i}.attention.self_attn.key."),
    (DistilBert, "distilbert.transformer.layer.{i}.attention.v_lin.",  "encoder.layer.{i}.attention.self_attn.value."),
    (DistilBert, "distilbert.transformer.layer.{i}.attention.out_lin.", "encoder.layer.{i}.attention.output.dense."),
    (DistilBert, "distilbert.transformer.layer.{i}.sa_layer_norm.",    "encoder.layer.{i}.attention.output.layer_norm."),
    (DistilBert, "distilbert.transformer.layer.{i}.ffn.lin1.",         "encoder.layer.{i}.intermediate.dense."),
    (DistilBert, "distilbert.transformer.layer.{i}.ffn.lin2.",         "encoder.layer.{i}.output.dense."),
    (DistilBert, "distilbert.transformer.layer.{i}.output_layer_norm.", "encoder.layer.{i}.output.layer_norm."),
    (DistilBert, "pre_classifier.",                                    "head.pre_classifier."),
    (DistilBert, "classifier.",                                        "head.classifier."),
    // ELECTRA: ElectraForSequenceClassification (its head is `ElectraClassificationHead`).
    (Electra, "electra.embeddings.LayerNorm.",                          "embeddings.layer_norm."),
    (Electra, "electra.embeddings.",                                    "embeddings."),
    (Electra, "electra.embeddings_project.",                            "embeddings_project."),
    (Electra, "electra.encoder.layer.{i}.attention.self.",              "encoder.layer.{i}.attention.self_attn."),
    (Electra, "electra.encoder.layer.{i}.attention.output.LayerNorm.",  "encoder.layer.{i}.attention.output.layer_norm."),
    (Electra, "electra.encoder.layer.{i}.output.LayerNorm.",            "encoder.layer.{i}.output.layer_norm."),
    (Electra, "electra.encoder.",                                       "encoder."),
    (Electra, "classifier.dense.",                                      "head.pre_classifier."),
    (Electra, "classifier.out_proj.",                                   "head.classifier."),
    // ALBERT: AlbertForSequenceClassification (inner_group_num 1: one layer per group, the
    // group's layer is block {i}).
    (Albert, "albert.embeddings.LayerNorm.",                                               "embeddings.layer_norm."),
    (Albert, "albert.embeddings.",                                                         "embeddings."),
    (Albert, "albert.encoder.embedding_hidden_mapping_in.",                                "embeddings_project."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.attention.LayerNorm.", "encoder.layer.{i}.attention.output.layer_norm."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.attention.dense.",     "encoder.layer.{i}.attention.output.dense."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.attention.",           "encoder.layer.{i}.attention.self_attn."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.full_layer_layer_norm.", "encoder.layer.{i}.output.layer_norm."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.ffn_output.",          "encoder.layer.{i}.output.dense."),
    (Albert, "albert.encoder.albert_layer_groups.{i}.albert_layers.0.ffn.",                 "encoder.layer.{i}.intermediate.dense."),
    (Albert, "albert.pooler.",                                                             "pooler.dense."),
    (Albert, "classifier.",                                                                "head.classifier."),
    // ModernBERT: ModernBertForSequenceClassification (its prediction head is `head`).
    (ModernBert, "model.layers.{i}.attn.Wqkv.", "model.layers.{i}.attn.wqkv."),
    (ModernBert, "model.layers.{i}.attn.Wo.",   "model.layers.{i}.attn.wo."),
    (ModernBert, "model.layers.{i}.mlp.Wi.",    "model.layers.{i}.mlp.wi."),
    (ModernBert, "model.layers.{i}.mlp.Wo.",    "model.layers.{i}.mlp.wo."),
    (ModernBert, "model.",                      "model."),
    (ModernBert, "classifier.",                 "head.classifier."),
    (ModernBert, "head.",                       "head."),
    // DeBERTa-v2/v3: DebertaV2ForSequenceClassification (`ContextPooler` is `pooler`).
    (DebertaV2, "deberta.embeddings.LayerNorm.",                          "embeddings.layer_norm."),
    (DebertaV2, "deberta.embeddings.",                                    "embeddings."),
    (DebertaV2, "deberta.encoder.layer.{i}.attention.self.",              "encoder.layer.{i}.attention.self_attn."),
    (DebertaV2, "deberta.encoder.layer.{i}.attention.output.LayerNorm.",  "encoder.layer.{i}.attention.output.layer_norm."),
    (DebertaV2, "deberta.encoder.layer.{i}.output.LayerNorm.",            "encoder.layer.{i}.output.layer_norm."),
    (DebertaV2, "deberta.encoder.conv.LayerNorm.",                        "encoder.conv.layer_norm."),
    (DebertaV2, "deberta.encoder.LayerNorm.",                             "encoder.layer_norm."),
    (DebertaV2, "deberta.encoder.",                                       "encoder."),
    (DebertaV2, "pooler.",                                                "pooler."),
    (DebertaV2, "classifier.",                                            "head.classifier."),
];

/// burn-store's `skip_enum_variants` for loading and saving: the family variant of
/// [`crate::model::SequenceClassifier`] is no part of the names in this table.
pub(crate) const SKIP_VARIANT: bool = true;

/// The prefix transformers puts before the base model's parameters in a task model.
pub fn base_prefix(arch: Architecture) -> &'static str {
    match arch {
        Bert => "bert.",
        Roberta => "roberta.",
        DistilBert => "distilbert.",
        Electra => "electra.",
        Albert => "albert.",
        ModernBert => "model.",
        DebertaV2 => "deberta.",
    }
}

/// What a LoRA run trains in full and PEFT saves whole (`modules_to_save`): the transformers
/// module names, and the Burn path prefixes their parameters have. DeBERTa's `ContextPooler`
/// is among them, as its base checkpoints have none (a frozen pooler would stay random).
pub fn full_trained_modules(
    arch: Architecture,
) -> (&'static [&'static str], &'static [&'static str]) {
    match arch {
        DistilBert => (&["pre_classifier", "classifier"], &["head."]),
        ModernBert => (&["head", "classifier"], &["head."]),
        DebertaV2 => (&["pooler", "classifier"], &["head.", "pooler."]),
        _ => (&["classifier"], &["head."]),
    }
}

/// Maps a checkpoint tensor name to the burnbert parameter path, or `None` if no row matches
/// (the tensor is then unused, like transformers' "unexpected keys"). Names saved by a bare
/// encoder (`BertModel`, no `bert.` prefix) are matched too.
pub fn hf_to_burn(arch: Architecture, name: &str) -> Option<String> {
    let rows = || TABLE.iter().filter(|row| row.0 == arch);
    let prefixed = format!("{}{name}", base_prefix(arch));
    rows()
        .find_map(|(_, hf, burn)| rewrite(name, hf, burn))
        .or_else(|| rows().find_map(|(_, hf, burn)| rewrite(&prefixed, hf, burn)))
}

/// Maps a burnbert parameter path (with PyTorch leaf names) to the transformers name.
pub fn burn_to_hf(arch: Architecture, path: &str) -> Option<String> {
    TABLE
        .iter()
        .filter(|row| row.0 == arch)
        .find_map(|(_, hf, burn)| rewrite(path, burn, hf))
}

/// If `name` starts with the template `from` (where `{i}` matches a number), returns `name`
/// with that prefix replaced by the template `to` (with the same number substituted).
fn rewrite(name: &str, from: &str, to: &str) -> Option<String> {
    let (index, rest) = match from.split_once("{i}") {
        None => (None, name.strip_prefix(from)?),
        Some((before, after)) => {
            let tail = name.strip_prefix(before)?;
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let (index, tail) = tail.split_at(digits);
            (Some(index), tail.strip_prefix(after)?)
        }
    };
    let to = match index {
        Some(index) => to.replace("{i}", index),
        None => to.to_string(),
    };
    Some(format!("{to}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bert_names_with_and_without_prefix() {
        for name in [
            "bert.encoder.layer.11.attention.self.query.weight",
            "encoder.layer.11.attention.self.query.weight",
        ] {
            assert_eq!(
                hf_to_burn(Bert, name).as_deref(),
                Some("encoder.layer.11.attention.self_attn.query.weight")
            );
        }
        assert_eq!(
            hf_to_burn(Bert, "embeddings.LayerNorm.weight").as_deref(),
            Some("embeddings.layer_norm.weight")
        );
        assert_eq!(
            hf_to_burn(Bert, "classifier.bias").as_deref(),
            Some("head.classifier.bias")
        );
        assert_eq!(hf_to_burn(Bert, "cls.predictions.bias"), None);
    }

    #[test]
    fn distilbert_and_roberta_heads() {
        assert_eq!(
            hf_to_burn(DistilBert, "distilbert.transformer.layer.3.ffn.lin2.weight").as_deref(),
            Some("encoder.layer.3.output.dense.weight")
        );
        assert_eq!(
            hf_to_burn(Roberta, "classifier.out_proj.weight").as_deref(),
            Some("head.classifier.weight")
        );
        assert_eq!(
            hf_to_burn(Roberta, "classifier.dense.bias").as_deref(),
            Some("head.pre_classifier.bias")
        );
    }

    /// A ModernBERT classifier's names, and a bare `ModernBertModel`'s (no `model.` prefix).
    #[test]
    fn modernbert_and_deberta_names() {
        assert_eq!(
            hf_to_burn(ModernBert, "model.layers.2.attn.Wqkv.weight").as_deref(),
            Some("model.layers.2.attn.wqkv.weight")
        );
        assert_eq!(
            hf_to_burn(ModernBert, "layers.2.mlp.Wo.weight").as_deref(),
            Some("model.layers.2.mlp.wo.weight")
        );
        assert_eq!(
            hf_to_burn(ModernBert, "classifier.bias").as_deref(),
            Some("head.classifier.bias")
        );
        assert_eq!(
            hf_to_burn(ModernBert, "head.norm.weight").as_deref(),
            Some("head.norm.weight")
        );
        assert_eq!(
            hf_to_burn(DebertaV2, "deberta.encoder.conv.LayerNorm.bias").as_deref(),
            Some("encoder.conv.layer_norm.bias")
        );
        assert_eq!(
            hf_to_burn(
                DebertaV2,
                "encoder.layer.1.attention.self.pos_key_proj.weight"
            )
            .as_deref(),
            Some("encoder.layer.1.attention.self_attn.pos_key_proj.weight")
        );
        assert_eq!(hf_to_burn(DebertaV2, "lm_predictions.lm_head.bias"), None);
    }

    #[test]
    fn every_row_round_trips() {
        for (arch, hf, _) in TABLE {
            let name = format!("{}weight", hf.replace("{i}", "4"));
            let burn = hf_to_burn(*arch, &name).unwrap();
            assert_eq!(
                burn_to_hf(*arch, &burn).as_deref(),
                Some(name.as_str()),
                "{arch:?}"
            );
        }
    }
}
