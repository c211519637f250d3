//! Holding out a validation set when none is given: seeded, stratified by class.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::labels::Target;

/// Splits row indices into `(train, valid)` with about `ratio` of each class (of all rows for
/// regression and multi-label) in `valid`, at least one per class that has two or more rows.
pub fn stratified_split(targets: &[Target], ratio: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, target) in targets.iter().enumerate() {
        let key = match target {
            Target::Class(c) => *c,
            _ => 0,
        };
        groups.entry(key).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (_, mut rows) in groups {
        rows.shuffle(&mut rng);
        let mut take = (rows.len() as f64 * ratio).round() as usize;
        if take == 0 && rows.len() > 1 && ratio > 0.0 {
            take = 1;
        }
        valid.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_seeded_and_complete() {
        let targets: Vec<Target> = (0..100)
            .map(|i| Target::Class(usize::from(i % 10 == 0)))
            .collect();
        let (train, valid) = stratified_split(&targets, 0.2, 42);
        assert_eq!(train.len() + valid.len(), 100);
        let minority = valid
            .iter()
            .filter(|&&i| targets[i] == Target::Class(1))
            .count();
        assert_eq!((valid.len(), minority), (20, 2));
        assert_eq!(
            (train.clone(), valid.clone()),
            stratified_split(&targets, 0.2, 42)
        );
        assert_ne!(valid, stratified_split(&targets, 0.2, 7).1);
    }
}
