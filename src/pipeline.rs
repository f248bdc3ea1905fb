//! read → normalize → write.
