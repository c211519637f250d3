//! Tokenization with the `tokenizers` crate: `tokenizer.json` when the model has one, else a
//! BERT WordPiece tokenizer built from `vocab.txt` and `tokenizer_config.json`.

use std::path::Path;

use serde::Deserialize;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};

/// How [`collate`](super::collate) pads a batch: with token `id`, to the longest input rounded up to a multiple
/// of `multiple` (never past `max_len`, unless an input is longer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    /// The padding token id.
    pub id: u32,
    /// Padded lengths are rounded up to a multiple of this (1: no rounding).
    pub multiple: usize,
    /// Rounding never pads past this length.
    pub max_len: usize,
}

/// Padding to the longest input only.
impl From<u32> for Padding {
    fn from(id: u32) -> Self {
        Self {
            id,
            multiple: 1,
            max_len: usize::MAX,
        }
    }
}

impl Padding {
    /// The padded length of a batch whose longest input has `longest` tokens.
    pub fn length(&self, longest: usize) -> usize {
        let rounded = longest.div_ceil(self.multiple.max(1)) * self.multiple.max(1);
        rounded.min(self.max_len).max(longest)
    }
}

/// One tokenized example, without padding (the batcher pads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids including the special tokens, at most `max_len` long.
    pub input_ids: Vec<u32>,
    /// Segment ids: 0 for the first text, 1 for the pair (BERT); all 0 for RoBERTa.
    pub token_type_ids: Vec<u32>,
}

/// A tokenizer that truncates (longest-first) to a fixed maximum length.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_len: usize,
    pad_multiple: usize,
}

/// The fields of `tokenizer_config.json` the `vocab.txt` fallback needs.
#[derive(Deserialize)]
struct TokenizerConfig {
    #[serde(default = "yes")]
    do_lower_case: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    tokenize_chinese_chars: bool,
}

fn yes() -> bool {
    true
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            do_lower_case: true,
            strip_accents: None,
            tokenize_chinese_chars: true,
        }
    }
}

/// The files besides the weights that make up a tokenizer, copied with a saved model.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

impl TextTokenizer {
    /// Loads the tokenizer of the model in `dir`; sequences are truncated to `max_len` tokens.
    pub fn from_dir(dir: &Path, max_len: usize, pad_token_id: u32) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let mut inner = if json.is_file() {
            Tokenizer::from_file(&json)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", json.display())))?
        } else {
            wordpiece_from_vocab(dir)?
        };
        if max_len < 4 {
            return Err(Error::Input(format!(
                "--max-len {max_len} is too small (at least 4)"
            )));
        }
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            pad_id: pad_token_id,
            max_len,
            pad_multiple: 1,
        })
    }

    /// Batches pad to a multiple of `multiple` tokens (at most `max_len`); 1: to the longest.
    pub fn with_pad_multiple(mut self, multiple: usize) -> Result<Self> {
        if multiple == 0 {
            return Err(Error::Input(
                "--pad-to-multiple-of 0: use 1 to pad to the longest input".into(),
            ));
        }
        self.pad_multiple = multiple;
        Ok(self)
    }

    /// How batches of this tokenizer's inputs are padded.
    pub fn padding(&self) -> Padding {
        Padding {
            id: self.pad_id,
            multiple: self.pad_multiple,
            max_len: self.max_len,
        }
    }

    /// The id used to pad batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The maximum sequence length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenizes one text or text pair, with special tokens and truncation.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        self.encode_checked(text, pair).map(|(encoded, _)| encoded)
    }

    /// Tokenizes one text or pair like [`Self::encode`]; also says whether it was truncated.
    pub fn encode_checked(&self, text: &str, pair: Option<&str>) -> Result<(Encoded, bool)> {
        let encoding = self
            .inner
            .encode(encode_input(text, pair), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok((encoded(&encoding), !encoding.get_overflowing().is_empty()))
    }

    /// Tokenizes many texts or text pairs, in parallel (the tokenizer's batch encoding); the
    /// same as [`Self::encode`] on each.
    pub fn encode_batch<'a>(
        &self,
        inputs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = inputs
            .into_iter()
            .map(|(text, pair)| encode_input(text, pair))
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encodings.iter().map(encoded).collect())
    }

    /// Saves `tokenizer.json` (without truncation/padding settings) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut plain = self.inner.clone();
        plain
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let path = dir.join("tokenizer.json");
        plain
            .save(&path, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }
}

/// A BERT tokenizer from `vocab.txt`, configured like transformers' `BertTokenizerFast`.
fn encode_input<'a>(text: &'a str, pair: Option<&'a str>) -> EncodeInput<'a> {
    match pair {
        Some(pair) => (text, pair).into(),
        None => text.into(),
    }
}

fn encoded(encoding: &tokenizers::Encoding) -> Encoded {
    Encoded {
        input_ids: encoding.get_ids().to_vec(),
        token_type_ids: encoding.get_type_ids().to_vec(),
    }
}

/// SentencePiece model files that stand in for `tokenizer.json` in some hub repositories.
const SENTENCEPIECE_FILES: [&str; 3] = ["spm.model", "spiece.model", "sentencepiece.bpe.model"];

fn wordpiece_from_vocab(dir: &Path) -> Result<Tokenizer> {
    let vocab = dir.join("vocab.txt");
    if !vocab.is_file() {
        // DeBERTa-v3's hub repositories, among others, ship only the SentencePiece model, which
        // transformers converts on the fly (with the `sentencepiece` package).
        if let Some(spm) = SENTENCEPIECE_FILES.iter().find(|f| dir.join(f).is_file()) {
            return Err(Error::Tokenizer(format!(
                "{}: no tokenizer.json, only the SentencePiece model {spm}; write one with Python transformers: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)",
                dir.display()
            )));
        }
        return Err(Error::Tokenizer(format!(
            "{}: neither tokenizer.json nor vocab.txt found",
            dir.display()
        )));
    }
    let config_path = dir.join("tokenizer_config.json");
    let config: TokenizerConfig = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: config_path.clone(),
            message: e.to_string(),
        })?
    } else {
        TokenizerConfig::default()
    };
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", vocab.display())))?;
    let mut tokenizer = Tokenizer::new(model);
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| Error::Tokenizer(format!("{}: no '{token}' token", vocab.display())))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            config.tokenize_chinese_chars,
            config.strip_accents,
            config.do_lower_case,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )))
        .with_decoder(Some(WordPieceDecoder::default()));
    Ok(tokenizer)
}
