//! Request bodies decoded the way upstream's `json.NewDecoder(body).Decode(&struct{…})` does,
//! including its error texts, which upstream sends back verbatim (`{"message":"EOF"}`,
//! `unexpected EOF`, `invalid character 'o' in literal null (expecting 'u')`).
//!
//! Go's decoder reads the first JSON value and ignores what follows it; unknown keys are ignored,
//! keys match field names case-insensitively, `null` leaves a field empty.

use serde_json::Value;

/// Decodes the first JSON value of `body` into the string fields `fields` (in Go's field order),
/// returning their values ("" when absent or null), or Go's error text.
pub fn decode_string_fields(body: &[u8], fields: &[&str]) -> Result<Vec<String>, String> {
    let (start, end) = first_value(body)?;
    let value: Value = serde_json::from_slice(&body[start..end]).map_err(|err| err.to_string())?;
    let object = match value {
        Value::Null => return Ok(vec![String::new(); fields.len()]),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type {}",
                go_kind(&other),
                go_struct_type(fields)
            ));
        }
    };
    fields
        .iter()
        .map(|field| {
            let found = object.get(*field).or_else(|| {
                object
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(field))
                    .map(|(_, value)| value)
            });
            match found {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(text)) => Ok(text.clone()),
                Some(other) => Err(format!(
                    "json: cannot unmarshal {} into Go struct field .{field} of type string",
                    go_kind(other)
                )),
            }
        })
        .collect()
}

fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How Go prints an anonymous struct type with these string fields.
fn go_struct_type(fields: &[&str]) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|field| {
            let mut name = (*field).to_owned();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{name} string \"json:\\\"{field}\\\"\"")
        })
        .collect();
    format!("struct {{ {} }}", members.join("; "))
}

/// Finds the first JSON value after leading whitespace: its byte range, or Go's error text.
pub fn first_value(input: &[u8]) -> Result<(usize, usize), String> {
    let mut scanner = Scanner { input, pos: 0 };
    scanner.skip_space();
    if scanner.pos == input.len() {
        return Err("EOF".to_owned());
    }
    let start = scanner.pos;
    scanner.value()?;
    Ok((start, scanner.pos))
}

struct Scanner<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, String> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| "unexpected EOF".to_owned())
    }

    fn value(&mut self) -> Result<(), String> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            other => Err(invalid(other, "looking for beginning of value")),
        }
    }

    fn object(&mut self) -> Result<(), String> {
        self.pos += 1;
        self.skip_space();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            match self.peek()? {
                b'"' => self.string()?,
                other => return Err(invalid(other, "looking for beginning of object key string")),
            }
            self.skip_space();
            match self.peek()? {
                b':' => self.pos += 1,
                other => return Err(invalid(other, "after object key")),
            }
            self.skip_space();
            self.value()?;
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.skip_space();
                }
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                other => return Err(invalid(other, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.pos += 1;
        self.skip_space();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.skip_space();
                }
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                other => return Err(invalid(other, "after array element")),
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.pos += 1;
        loop {
            let byte = self.peek()?;
            self.pos += 1;
            match byte {
                b'"' => return Ok(()),
                b'\\' => {
                    let escape = self.peek()?;
                    self.pos += 1;
                    match escape {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let hex = self.peek()?;
                                if !hex.is_ascii_hexdigit() {
                                    return Err(invalid(
                                        hex,
                                        "in \\u hexadecimal character escape",
                                    ));
                                }
                                self.pos += 1;
                            }
                        }
                        other => return Err(invalid(other, "in string escape code")),
                    }
                }
                control if control < 0x20 => return Err(invalid(control, "in string literal")),
                _ => {}
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            other => return Err(invalid(other, "in numeric literal")),
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            match self.peek()? {
                b'0'..=b'9' => self.digits(),
                other => return Err(invalid(other, "after decimal point in numeric literal")),
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
            if let b'+' | b'-' = self.peek()? {
                self.pos += 1;
            }
            match self.peek()? {
                b'0'..=b'9' => self.digits(),
                other => return Err(invalid(other, "in exponent of numeric literal")),
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        for expected in word.bytes() {
            let byte = self.peek()?;
            if byte != expected {
                return Err(invalid(
                    byte,
                    &format!("in literal {word} (expecting {})", quote_char(expected)),
                ));
            }
            self.pos += 1;
        }
        Ok(())
    }
}

fn invalid(byte: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(byte))
}

/// Go's `quoteChar`: `'x'`, `'\''`, `'"'`, or an escaped form for non-printable bytes.
fn quote_char(byte: u8) -> String {
    match byte {
        b'\'' => r"'\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        b'\n' => r"'\n'".to_owned(),
        b'\r' => r"'\r'".to_owned(),
        b'\t' => r"'\t'".to_owned(),
        0x20..=0x7e => format!("'{}'", byte as char),
        other => format!("'\\x{other:02x}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_channel(body: &str) -> Result<Vec<String>, String> {
        decode_string_fields(body.as_bytes(), &["topic", "channel"])
    }

    #[test]
    fn go_decoder_errors() {
        let cases = [
            ("", "EOF"),
            ("  \n", "EOF"),
            ("{", "unexpected EOF"),
            ("{\"topic\":\"a", "unexpected EOF"),
            (
                "not json",
                "invalid character 'o' in literal null (expecting 'u')",
            ),
            (
                "nope",
                "invalid character 'o' in literal null (expecting 'u')",
            ),
            ("x", "invalid character 'x' looking for beginning of value"),
            (
                "{topic:1}",
                "invalid character 't' looking for beginning of object key string",
            ),
            ("{\"a\" 1}", "invalid character '1' after object key"),
            (
                "{\"a\":1 \"b\"}",
                "invalid character '\"' after object key:value pair",
            ),
            ("[1 2]", "invalid character '2' after array element"),
            ("-x", "invalid character 'x' in numeric literal"),
            ("\"\\q\"", "invalid character 'q' in string escape code"),
            (
                "{\"topic\":1}",
                "json: cannot unmarshal number into Go struct field .topic of type string",
            ),
            (
                "[]",
                "json: cannot unmarshal array into Go value of type struct { Topic string \"json:\\\"topic\\\"\"; Channel string \"json:\\\"channel\\\"\" }",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(topic_channel(body), Err(expected.to_owned()), "{body:?}");
        }
    }

    #[test]
    fn go_decoder_successes() {
        assert_eq!(
            topic_channel(r#"{"topic":"t","channel":"c","extra":[1,{"x":null}]}"#),
            Ok(vec!["t".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            topic_channel(r#"{"TOPIC":"t"} trailing garbage"#),
            Ok(vec!["t".to_owned(), String::new()])
        );
        assert_eq!(
            topic_channel("null"),
            Ok(vec![String::new(), String::new()])
        );
        assert_eq!(
            topic_channel(r#"{"topic":null,"channel":"c"}"#),
            Ok(vec![String::new(), "c".to_owned()])
        );
    }
}
