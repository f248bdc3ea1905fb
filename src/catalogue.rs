//! The field catalogue and index template, generated from a profile.
