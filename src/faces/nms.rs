//! Greedy non-maximum suppression with a total, deterministic order.
use crate::faces::geometry::BoxF;
use std::cmp::Ordering;

/// One detected face in source-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    pub bbox: BoxF,
    pub score: f32,
    /// The detector scale (1.0 = the capped input, 2.0 = that input upscaled 2x) that produced the box.
    pub scale: f32,
}

/// Best first: score descending, then position (y0, x0, y1, x1) and scale ascending, so equal scores (the detector
/// saturates at 1.0) never depend on the order candidates arrived in.
pub fn rank(a: &Detection, b: &Detection) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.bbox.y0.total_cmp(&b.bbox.y0))
        .then(a.bbox.x0.total_cmp(&b.bbox.x0))
        .then(a.bbox.y1.total_cmp(&b.bbox.y1))
        .then(a.bbox.x1.total_cmp(&b.bbox.x1))
        .then(a.scale.total_cmp(&b.scale))
}

/// Keeps the best box of every cluster: candidates in [`rank`] order, each dropped when its IoU with an already
/// kept box exceeds `iou_threshold`. At most `top_k` candidates (the best) are considered. Returns the kept boxes in
/// rank order.
pub fn nms(mut candidates: Vec<Detection>, iou_threshold: f32, top_k: usize) -> Vec<Detection> {
    candidates.sort_by(rank);
    candidates.truncate(top_k);
    let mut kept: Vec<Detection> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.bbox.iou(&c.bbox) <= iou_threshold) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x0: f32, y0: f32, x1: f32, y1: f32, score: f32) -> Detection {
        Detection { bbox: BoxF::new(x0, y0, x1, y1), score, scale: 1.0 }
    }

    #[test]
    fn overlapping_boxes_keep_the_best_one() {
        // b overlaps a with IoU 81/119 (~0.68) and is dropped; c is far away and kept.
        let (a, b, c) =
            (det(0.0, 0.0, 10.0, 10.0, 0.9), det(1.0, 1.0, 11.0, 11.0, 0.8), det(50.0, 50.0, 60.0, 60.0, 0.7));
        assert_eq!(nms(vec![b, c, a], 0.3, 100), vec![a, c]);
    }

    #[test]
    fn threshold_is_exclusive_and_separates_moderate_overlaps() {
        // Half overlap: IoU exactly 1/3.
        let (a, b) = (det(0.0, 0.0, 10.0, 10.0, 0.9), det(5.0, 0.0, 15.0, 10.0, 0.8));
        assert_eq!(nms(vec![a, b], 0.3, 100).len(), 1);
        assert_eq!(nms(vec![a, b], 0.34, 100).len(), 2);
    }

    #[test]
    fn suppression_is_not_transitive() {
        // b is suppressed by a; c overlaps only b, so it survives (greedy NMS compares with kept boxes only).
        let a = det(0.0, 0.0, 10.0, 10.0, 0.9);
        let b = det(4.0, 0.0, 14.0, 10.0, 0.8);
        let c = det(9.0, 0.0, 19.0, 10.0, 0.7);
        assert!(a.bbox.iou(&c.bbox) < 0.3 && b.bbox.iou(&c.bbox) > 0.3);
        assert_eq!(nms(vec![c, b, a], 0.3, 100), vec![a, c]);
    }

    #[test]
    fn ties_are_broken_by_position_whatever_the_input_order() {
        let boxes: Vec<Detection> =
            (0..6).map(|i| det(i as f32 * 4.0, 0.0, i as f32 * 4.0 + 10.0, 10.0, 1.0)).collect();
        let forward = nms(boxes.clone(), 0.3, 100);
        let backward = nms(boxes.into_iter().rev().collect(), 0.3, 100);
        assert_eq!(forward, backward);
        // Leftmost first, then every box that does not overlap a kept one by more than 0.3.
        let x0s: Vec<f32> = forward.iter().map(|d| d.bbox.x0).collect();
        assert_eq!(x0s, vec![0.0, 8.0, 16.0]);
    }

    #[test]
    fn top_k_limits_the_candidates() {
        let boxes = vec![det(0.0, 0.0, 1.0, 1.0, 0.5), det(5.0, 5.0, 6.0, 6.0, 0.9), det(9.0, 9.0, 10.0, 10.0, 0.7)];
        let kept = nms(boxes, 0.3, 2);
        assert_eq!(kept.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.9, 0.7]);
    }
}
