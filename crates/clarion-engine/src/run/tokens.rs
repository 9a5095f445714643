//! How many tokens a text and a message cost, for `limits.max_context_tokens`: OpenAI's
//! own tokenizers for the model families that use them, a documented estimate for every
//! other model (`limits.tokenizer`, `docs/flow-format.md`).
//!
//! A [`Counter`] is chosen once per engine, from the flow's `tokenizer` and the name of
//! the model the provider really asks (the flags may override the flow's). OpenAI's
//! tokenizers (`o200k_base`, `cl100k_base`, through `tiktoken-rs`) count exactly what the
//! model reads of a text; local and other providers' models have vocabularies of their own
//! that no crate bundles, so their texts are estimated at a quarter of their bytes. The
//! framing a message costs beyond its text ([`MESSAGE_OVERHEAD`]) is the same for both:
//! OpenAI's published rule of thumb (3 tokens a message and 1 for the role), not a count.
//!
//! A tokenizer's vocabulary is built on its first use (0.2–0.3 s for
//! `o200k_base`) and shared by the process after that; [`Counter::prepare`] builds it
//! ahead, so the first request does not pay for it. Counting is the expensive part of
//! truncation, which is why the window counts each message once, as it is appended.

use clarion_flow::Tokenizer;

use crate::thread::{Message, MessageKind};

/// Tokens every message costs beyond its text: role, separators, the wire's framing.
pub const MESSAGE_OVERHEAD: u64 = 4;

/// How the tokens of a text are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Counter {
    /// A text's length in bytes over four, rounded up.
    #[default]
    Estimate,
    /// OpenAI's `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o1, o3, o4). Without the `tiktoken`
    /// feature, estimated.
    O200kBase,
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5 Turbo). Without the `tiktoken` feature,
    /// estimated.
    Cl100kBase,
}

impl Counter {
    /// The counter `tokenizer` names; under `auto`, the one the family of `model` uses,
    /// or the estimate for a model Clarion does not know.
    #[must_use]
    pub fn for_model(tokenizer: Tokenizer, model: &str) -> Self {
        match tokenizer {
            Tokenizer::Estimate => Self::Estimate,
            Tokenizer::O200kBase => Self::O200kBase,
            Tokenizer::Cl100kBase => Self::Cl100kBase,
            Tokenizer::Auto => Self::of_family(model),
        }
    }

    /// The tokenizer of an OpenAI model family, by name: `gpt-4o-mini`, `gpt-4.1`,
    /// `openai/gpt-5` (a router's prefix), `gpt-35-turbo` (Azure's spelling).
    fn of_family(model: &str) -> Self {
        let model = model.trim().to_ascii_lowercase();
        let name = model.rsplit('/').next().unwrap_or(&model);
        // A family is its name exactly or followed by a version, a size or a tag.
        let is = |family: &str| {
            name.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', ':', '.', '@']))
        };
        let o200k = [
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
        ];
        let cl100k = ["gpt-4", "gpt-3.5-turbo", "gpt-35-turbo"];
        if o200k.iter().any(|f| is(f)) {
            Self::O200kBase
        } else if cl100k.iter().any(|f| is(f)) {
            Self::Cl100kBase
        } else {
            Self::Estimate
        }
    }

    /// Whether texts are counted with a real tokenizer (in this build).
    #[must_use]
    pub fn is_exact(self) -> bool {
        cfg!(feature = "tiktoken") && self != Self::Estimate
    }

    /// Builds the tokenizer's vocabulary now, if it has one, rather than at the first count.
    pub fn prepare(self) {
        #[cfg(feature = "tiktoken")]
        if let Some(bpe) = self.bpe() {
            std::hint::black_box(bpe);
        }
    }

    #[cfg(feature = "tiktoken")]
    fn bpe(self) -> Option<&'static tiktoken_rs::CoreBPE> {
        match self {
            Self::Estimate => None,
            Self::O200kBase => Some(tiktoken_rs::o200k_base_singleton()),
            Self::Cl100kBase => Some(tiktoken_rs::cl100k_base_singleton()),
        }
    }

    /// The tokens of `text`. Special tokens' spellings (`<|endoftext|>`) count as the
    /// ordinary text they are in a message.
    #[must_use]
    pub fn text(self, text: &str) -> u64 {
        #[cfg(feature = "tiktoken")]
        if let Some(bpe) = self.bpe() {
            return bpe.encode_ordinary(text).len() as u64;
        }
        estimate(text)
    }

    /// The tokens of one message as a provider sends it: its texts, and the framing.
    #[must_use]
    pub fn message(self, message: &Message) -> u64 {
        let text = match &message.kind {
            MessageKind::User { text }
            | MessageKind::Assistant { text }
            | MessageKind::Context { text, .. }
            | MessageKind::Question { text, .. } => self.text(text),
            MessageKind::ToolCalls { text, calls } => {
                text.as_deref().map_or(0, |t| self.text(t))
                    + calls
                        .iter()
                        .map(|c| {
                            self.text(&c.id)
                                + self.text(&c.name)
                                + self.text(&c.arguments)
                                + MESSAGE_OVERHEAD
                        })
                        .sum::<u64>()
            }
            MessageKind::ToolOutput {
                call_id, content, ..
            } => self.text(call_id) + self.text(content),
        };
        text + MESSAGE_OVERHEAD
    }
}

/// The estimated tokens of `text`: its length in bytes over four, rounded up.
#[must_use]
pub fn estimate(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::Metadata;

    #[test]
    fn auto_picks_openais_tokenizer_by_family_and_estimates_the_rest() {
        let auto = |model| Counter::for_model(Tokenizer::Auto, model);
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "GPT-4.1-mini",
            "gpt-5",
            "gpt-5-nano-2025-08-07",
            "o1",
            "o3-mini",
            "o4-mini",
            "openai/gpt-4.1",
            "gpt-oss:20b",
        ] {
            assert_eq!(auto(model), Counter::O200kBase, "{model}");
        }
        for model in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-4-0613",
            "gpt-3.5-turbo",
            "gpt-35-turbo",
        ] {
            assert_eq!(auto(model), Counter::Cl100kBase, "{model}");
        }
        for model in [
            "qwen2.5-coder:1.5b",
            "llama3.1:8b",
            "claude-sonnet-4",
            "o1x",
            "gpt-4omega",
            "my-azure-deployment",
            "",
        ] {
            assert_eq!(auto(model), Counter::Estimate, "{model}");
        }
        // A named tokenizer wins over the model's name.
        assert_eq!(
            Counter::for_model(Tokenizer::Estimate, "gpt-4o"),
            Counter::Estimate
        );
        assert_eq!(
            Counter::for_model(Tokenizer::Cl100kBase, "qwen2.5-coder:1.5b"),
            Counter::Cl100kBase
        );
    }

    #[test]
    fn estimates_are_a_quarter_of_the_bytes_plus_overhead() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abcde"), 2);
        let m = Message {
            id: "msg_0".into(),
            run_id: None,
            created_at: 0,
            kind: MessageKind::User {
                text: "abcd".into(),
            },
            metadata: Metadata::default(),
        };
        assert_eq!(Counter::Estimate.message(&m), 1 + MESSAGE_OVERHEAD);
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn openais_tokenizers_count_what_tiktoken_counts() {
        // "hello" and " world" are one token each in both vocabularies.
        assert_eq!(Counter::O200kBase.text("hello world"), 2);
        assert_eq!(Counter::Cl100kBase.text("hello world"), 2);
        assert_eq!(Counter::O200kBase.text(""), 0);
        // Special tokens are text in a message.
        assert!(Counter::O200kBase.text("<|endoftext|>") > 1);
        assert!(Counter::O200kBase.is_exact());
        assert!(!Counter::Estimate.is_exact());
    }
}
