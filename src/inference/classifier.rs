//! The library's front door for inference: a classifier from a directory or hub id, texts in,
//! typed predictions out.

use burn::tensor::Device;

use super::{Prediction, Predictor, TextInput};
use crate::error::Result;

/// A fine-tuned classifier (a `burnbert train` output or any transformers
/// `*ForSequenceClassification` directory of a supported family) ready to label texts.
///
/// ```
/// # fn main() -> burnbert::Result<()> {
/// use burnbert::{Classifier, Prediction};
///
/// let device = burnbert::default_device()?;
/// let clf = Classifier::from_pretrained("tests/fixtures/roberta", &device)?;
/// let out = clf.predict(&["a fine film", "a dull mess"])?;
/// assert_eq!(out.len(), 2);
/// if let Prediction::SingleLabel { label, scores } = &out[0] {
///     assert!(clf.labels().contains(label));
///     assert_eq!(scores.len(), clf.labels().len());
/// }
/// # Ok(())
/// # }
/// ```
pub struct Classifier {
    predictor: Predictor,
    batch_size: usize,
}

impl Classifier {
    /// Loads `model` (a directory, or a Hugging Face hub id found in the local cache or
    /// fetched) onto `device`, truncating inputs to the model's limit.
    pub fn from_pretrained(model: &str, device: &Device) -> Result<Self> {
        let (predictor, _notices) = Predictor::load(model, None, device.clone())?;
        Ok(Self {
            predictor,
            batch_size: 32,
        })
    }

    /// Inputs per forward pass (32 by default).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The multi-label decision threshold (0.5 by default).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.predictor.threshold = threshold;
        self
    }

    /// The model's labels, in output order.
    pub fn labels(&self) -> &[String] {
        &self.predictor.config.id2label
    }

    /// One prediction per text, in order.
    pub fn predict<T: AsRef<str>>(&self, texts: &[T]) -> Result<Vec<Prediction>> {
        let inputs: Vec<TextInput> = texts
            .iter()
            .map(|t| TextInput {
                text: t.as_ref().to_string(),
                text_pair: None,
            })
            .collect();
        self.predictor.predict(&inputs, self.batch_size)
    }

    /// One prediction per (text, second text) pair, in order.
    pub fn predict_pairs<T: AsRef<str>, U: AsRef<str>>(
        &self,
        pairs: &[(T, U)],
    ) -> Result<Vec<Prediction>> {
        let inputs: Vec<TextInput> = pairs
            .iter()
            .map(|(a, b)| TextInput {
                text: a.as_ref().to_string(),
                text_pair: Some(b.as_ref().to_string()),
            })
            .collect();
        self.predictor.predict(&inputs, self.batch_size)
    }
}
