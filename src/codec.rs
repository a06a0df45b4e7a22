//! How server functions answer: JSON, as with server_fn's `Json`, except
//! that the browser reads an answer as text (`serde_json::from_str`).
//!
//! Island props reach the browser as text and Leptos reads them with
//! `serde_json::from_str`; server_fn's own JSON codec reads answers with
//! `from_slice`. Each reader is a separate copy of serde_json's parser and
//! of every type's deserializer in the browser bundle, so the generator's
//! page carried `TaskView`'s and `AppError`'s twice. Reading both through
//! one keeps one copy (BENCHMARKS.md, 2026-12-05: the generator's bundle).

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON, read as UTF-8 text.
pub struct JsonText;

/// Answers as [`JsonText`] in the body of a `POST` (the output of every
/// server function: `#[server(output = Json)]`).
pub type Json = Post<JsonText>;

impl ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonText {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;

    #[test]
    fn answers_read_back_as_they_were_written() {
        let bytes = <JsonText as Encodes<_>>::encode(&vec![TaskStatus::Processing, TaskStatus::Failed]).unwrap();
        let back: Vec<TaskStatus> = <JsonText as Decodes<_>>::decode(bytes).unwrap();
        assert_eq!(back, vec![TaskStatus::Processing, TaskStatus::Failed]);
    }

    #[test]
    fn an_answer_that_is_not_text_is_an_error() {
        let refused: Result<String, _> = <JsonText as Decodes<_>>::decode(Bytes::from_static(b"\"\xff\""));
        assert!(refused.is_err());
    }
}
