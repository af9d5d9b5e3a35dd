//! Failures in the one form Flink's Java clients read: the
//! `serialized-throwable` of a `failure-cause` holds a Java-serialized
//! `org.apache.flink.util.SerializedThrowable`, and the client reads nothing
//! else. Without it, a client sees a malformed answer and retries for a
//! minute instead of reporting the failure.

use base64::Engine;

/// The stream header and class descriptors of a `SerializedThrowable`
/// (serialVersionUID 7284183123441947635) and its superclasses, up to its
/// `detailMessage`, with no cause.
const PREFIX: &str = "aced0005737200296f72672e6170616368652e666c696e6b2e7574696c2e53657269616c697a65645468726f7761626c6565169df51fa713f30200034c001966756c6c537472696e676966696564537461636b54726163657400124c6a6176612f6c616e672f537472696e673b4c00166f726967696e616c4572726f72436c6173734e616d6571007e00015b001373657269616c697a6564457863657074696f6e7400025b42787200136a6176612e6c616e672e457863657074696f6ed0fd1f3e1a3b1cc4020000787200136a6176612e6c616e672e5468726f7761626c65d5c635273977b8cb0300044c000563617573657400154c6a6176612f6c616e672f5468726f7761626c653b4c000d64657461696c4d65737361676571007e00015b000a737461636b547261636574001e5b4c6a6176612f6c616e672f537461636b5472616365456c656d656e743b4c001473757070726573736564457863657074696f6e737400104c6a6176612f7574696c2f4c6973743b787070";

/// An empty stack trace and an empty suppressed list, closing `Throwable`.
const MIDDLE: &str = "7572001e5b4c6a6176612e6c616e672e537461636b5472616365456c656d656e743b02462a3c3cfd22390200007870000000007372001f6a6176612e7574696c2e436f6c6c656374696f6e7324456d7074794c6973747ab817b43ca79ede020000787078";

/// A Java string in serialization's modified UTF-8.
fn string(out: &mut Vec<u8>, s: &str) {
    let mut bytes = Vec::with_capacity(s.len());
    for unit in s.encode_utf16() {
        match unit {
            1..=0x7f => bytes.push(unit as u8),
            0 | 0x80..=0x7ff => {
                bytes.push(0xc0 | (unit >> 6) as u8);
                bytes.push(0x80 | (unit & 0x3f) as u8);
            }
            _ => {
                bytes.push(0xe0 | (unit >> 12) as u8);
                bytes.push(0x80 | ((unit >> 6) & 0x3f) as u8);
                bytes.push(0x80 | (unit & 0x3f) as u8);
            }
        }
    }
    match u16::try_from(bytes.len()) {
        Ok(n) => {
            out.push(0x74);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            out.push(0x7c);
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&bytes);
}

/// `{"class", "stack-trace", "serialized-throwable"}` for a failure: Java
/// clients print `class: message` as its cause.
pub fn failure_cause(class: &str, message: &str) -> serde_json::Value {
    let mut bytes = hex::decode(PREFIX).expect("constant hex");
    string(&mut bytes, message);
    bytes.extend(hex::decode(MIDDLE).expect("constant hex"));
    let trace = format!("{class}: {message}");
    string(&mut bytes, &trace);
    string(&mut bytes, class);
    bytes.push(0x70); // no serialized original exception
    serde_json::json!({
        "class": class,
        "stack-trace": trace,
        "serialized-throwable": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_modified_utf8_with_their_length() {
        let mut out = Vec::new();
        string(&mut out, "a\0é€😀");
        let expected: Vec<u8> = vec![
            0x74, 0, 14, b'a', 0xc0, 0x80, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xbd, 0xed,
            0xb8, 0x80,
        ];
        assert_eq!(out, expected);
        let mut long = Vec::new();
        string(&mut long, &"x".repeat(70_000));
        assert_eq!(&long[..9], &[0x7c, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn the_cause_names_the_class_and_message() {
        let v = failure_cause("weir.SavepointFailure", "no room");
        assert_eq!(v["stack-trace"], "weir.SavepointFailure: no room");
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["serialized-throwable"].as_str().unwrap())
            .unwrap();
        assert_eq!(&b[..4], &[0xac, 0xed, 0, 5]);
        assert_eq!(*b.last().unwrap(), 0x70);
    }
}
