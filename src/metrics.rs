//! Evaluation metrics over a whole split, computed the way scikit-learn and scipy do
//! (the numbers GLUE reports). Pure functions on host values; the training loop wraps them
//! as Burn metrics and `eval` prints them.

use std::collections::BTreeMap;

/// Index of the largest value (the first on ties; 0 for an empty row).
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .rev()
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

/// Counts `[true][predicted]` over `n` classes.
pub fn confusion(predicted: &[usize], actual: &[usize], n: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; n]; n];
    for (&p, &a) in predicted.iter().zip(actual) {
        m[a][p] += 1;
    }
    m
}

/// Fraction of predictions equal to the target.
pub fn accuracy(predicted: &[usize], actual: &[usize]) -> f64 {
    let right = predicted.iter().zip(actual).filter(|(p, a)| p == a).count();
    right as f64 / actual.len().max(1) as f64
}

/// Precision, recall and F1 of one class from a confusion matrix (0 where undefined).
pub fn class_prf(m: &[Vec<usize>], class: usize) -> (f64, f64, f64) {
    let tp = m[class][class] as f64;
    let predicted: f64 = m.iter().map(|row| row[class] as f64).sum();
    let actual: f64 = m[class].iter().sum::<usize>() as f64;
    let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
    let recall = if actual > 0.0 { tp / actual } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    (precision, recall, f1)
}

/// Precision, recall, F1 and support (true count) of every class.
pub fn per_class(m: &[Vec<usize>]) -> Vec<(f64, f64, f64, usize)> {
    (0..m.len())
        .map(|c| {
            let (p, r, f) = class_prf(m, c);
            (p, r, f, m[c].iter().sum())
        })
        .collect()
}

/// Precision, recall, F1: of class 1 for two classes (scikit-learn's `binary`), else the
/// unweighted mean over classes (`macro`).
pub fn precision_recall_f1(m: &[Vec<usize>]) -> (f64, f64, f64) {
    if m.len() == 2 {
        return class_prf(m, 1);
    }
    let n = m.len() as f64;
    let sums = (0..m.len())
        .map(|c| class_prf(m, c))
        .fold((0.0, 0.0, 0.0), |acc, x| {
            (acc.0 + x.0, acc.1 + x.1, acc.2 + x.2)
        });
    (sums.0 / n, sums.1 / n, sums.2 / n)
}

/// Matthews correlation coefficient, multi-class form (scikit-learn's `matthews_corrcoef`).
pub fn mcc(m: &[Vec<usize>]) -> f64 {
    let n = m.len();
    let total: f64 = m.iter().flatten().sum::<usize>() as f64;
    let correct: f64 = (0..n).map(|k| m[k][k] as f64).sum();
    let t: Vec<f64> = (0..n).map(|k| m[k].iter().sum::<usize>() as f64).collect();
    let p: Vec<f64> = (0..n)
        .map(|k| m.iter().map(|r| r[k] as f64).sum())
        .collect();
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let numerator = correct * total - tp;
    let denominator = ((total * total - p.iter().map(|x| x * x).sum::<f64>())
        * (total * total - t.iter().map(|x| x * x).sum::<f64>()))
    .sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// Mean squared error.
pub fn mse(predicted: &[f64], actual: &[f64]) -> f64 {
    let n = actual.len().max(1) as f64;
    predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a) * (p - a))
        .sum::<f64>()
        / n
}

/// Pearson correlation (0 when either side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks starting at 1, ties sharing their average rank (scipy's `rankdata`).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman rank correlation.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Multi-label micro-F1 over all (example, label) decisions.
pub fn micro_f1(predicted: &[Vec<bool>], actual: &[Vec<bool>]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (p_row, a_row) in predicted.iter().zip(actual) {
        for (&p, &a) in p_row.iter().zip(a_row) {
            match (p, a) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denominator as f64
    }
}

/// Multi-label Hamming score: the fraction of (example, label) decisions that are right
/// (1 − scikit-learn's `hamming_loss`).
pub fn hamming(predicted: &[Vec<bool>], actual: &[Vec<bool>]) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for (p_row, a_row) in predicted.iter().zip(actual) {
        for (p, a) in p_row.iter().zip(a_row) {
            right += usize::from(p == a);
            total += 1;
        }
    }
    right as f64 / total.max(1) as f64
}

/// Everything an evaluation reports, keyed by lower-case metric name.
pub type MetricValues = BTreeMap<String, f64>;

/// All single-label metrics.
pub fn classification_metrics(predicted: &[usize], actual: &[usize], n: usize) -> MetricValues {
    let m = confusion(predicted, actual, n);
    let (precision, recall, f1) = precision_recall_f1(&m);
    MetricValues::from([
        ("accuracy".into(), accuracy(predicted, actual)),
        ("precision".into(), precision),
        ("recall".into(), recall),
        ("f1".into(), f1),
        ("mcc".into(), mcc(&m)),
    ])
}

/// All regression metrics.
pub fn regression_metrics(predicted: &[f64], actual: &[f64]) -> MetricValues {
    MetricValues::from([
        ("mse".into(), mse(predicted, actual)),
        ("pearson".into(), pearson(predicted, actual)),
        ("spearman".into(), spearman(predicted, actual)),
    ])
}

/// All multi-label metrics.
pub fn multi_label_metrics(predicted: &[Vec<bool>], actual: &[Vec<bool>]) -> MetricValues {
    MetricValues::from([
        ("micro_f1".into(), micro_f1(predicted, actual)),
        ("hamming".into(), hamming(predicted, actual)),
    ])
}

/// Whether a larger value of the metric is better.
pub fn higher_is_better(name: &str) -> bool {
    !matches!(name, "loss" | "mse")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn binary_metrics_by_hand() {
        // actual:    1 1 1 1 0 0 0 0 0 0
        // predicted: 1 1 1 0 1 1 0 0 0 0  -> tp 3, fn 1, fp 2, tn 4
        let actual = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let predicted = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        let v = classification_metrics(&predicted, &actual, 2);
        close(v["accuracy"], 0.7);
        close(v["precision"], 3.0 / 5.0);
        close(v["recall"], 3.0 / 4.0);
        close(v["f1"], 2.0 * 0.6 * 0.75 / 1.35);
        // (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 − 2) / sqrt(5·4·6·5)
        close(v["mcc"], 10.0 / 600f64.sqrt());
    }

    #[test]
    fn per_class_rows_and_confusion() {
        let m = confusion(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(m, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
        let rows = per_class(&m);
        assert_eq!(rows[1], (2.0 / 3.0, 1.0, 0.8, 2));
        assert_eq!(rows[2].3, 2);
    }

    #[test]
    fn macro_f1_for_three_classes() {
        let actual = [0, 0, 1, 1, 2, 2];
        let predicted = [0, 1, 1, 1, 2, 0];
        // class 0: p 1/2 r 1/2 f 1/2; class 1: p 2/3 r 1 f 0.8; class 2: p 1 r 1/2 f 2/3
        let v = classification_metrics(&predicted, &actual, 3);
        close(v["f1"], (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
        close(v["accuracy"], 4.0 / 6.0);
    }

    #[test]
    fn correlations_with_ties() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 4.0, 6.0, 8.0, 10.0];
        close(pearson(&x, &y), 1.0);
        close(spearman(&x, &[5.0, 6.0, 7.0, 8.0, 7.0]), 0.8207826816681233);
        close(ranks(&[3.0, 1.0, 3.0])[0], 2.5);
        close(mse(&[1.0, 2.0], &[2.0, 4.0]), 2.5);
    }

    #[test]
    fn multi_label_scores() {
        let p = vec![vec![true, false, true], vec![false, false, true]];
        let a = vec![vec![true, true, false], vec![false, false, true]];
        // tp 2, fp 1, fn 1 -> micro-F1 4/6; 4 of 6 decisions right
        close(micro_f1(&p, &a), 4.0 / 6.0);
        close(hamming(&p, &a), 4.0 / 6.0);
    }
}
