//! A strict JSON reader for a body already checked as UTF-8: serde's `Deserializer` for
//! the types it builds, and [`Reader::entries`] and [`Reader::skip`] for walking an
//! object by hand.
//!
//! serde_json spent most of a review's parse on its strings (about 75 instructions for
//! each of some 320 keys and values, looking at 8 bytes at a time) and on the fields
//! graceful does not read, skipped one token at a time. Here a string's end is found 16
//! bytes at a time, a value that is not read is checked and skipped in one loop, and a
//! string without escapes is borrowed from the body. It accepts what RFC 8259 accepts
//! (tests compare it with serde_json on generated documents), nests no deeper than
//! serde_json does, and says at which line and column the input went wrong.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Unexpected, Visitor};

use super::{ends_text, stops};

/// How deep arrays and objects may nest, as in serde_json: deeper input is refused
/// rather than allowed to exhaust the stack.
const MAX_DEPTH: usize = 127;

/// Why the input is not the JSON expected, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    /// 1-based; 0 until the error is placed (serde's own errors start unplaced).
    line: usize,
    column: usize,
}

impl Error {
    #[cold]
    fn at(text: &str, at: usize, message: &str) -> Self {
        let before = &text.as_bytes()[..at.min(text.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Self {
            message: message.to_string(),
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            column: before.len() - line_start,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.line > 0 {
            write!(f, " at line {} column {}", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            message: message.to_string(),
            line: 0,
            column: 0,
        }
    }
}

/// A JSON number as written: an integer when it is one and fits, else a float.
enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

pub struct Reader<'de> {
    text: &'de str,
    /// The byte read next.
    at: usize,
    /// The arrays and objects open around `at`.
    depth: usize,
}

impl<'de> Reader<'de> {
    pub fn new(text: &'de str) -> Self {
        Self {
            text,
            at: 0,
            depth: 0,
        }
    }

    /// Reads `text` whole as a `T`: only whitespace may follow the value.
    pub fn read_all<T: Deserialize<'de>>(text: &'de str) -> Result<T, Error> {
        let mut reader = Self::new(text);
        let value = reader.read()?;
        reader.end()?;
        Ok(value)
    }

    /// Reads the next value as a `T`.
    pub fn read<T: Deserialize<'de>>(&mut self) -> Result<T, Error> {
        T::deserialize(self)
    }

    /// Checks that only whitespace is left.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// Whether the next value is `null`, which is then read.
    pub fn null(&mut self) -> Result<bool, Error> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    /// Reads an object, handing each key to `entry`, which must read or skip its value.
    pub fn entries<E: From<Error>>(
        &mut self,
        mut entry: impl FnMut(&mut Self, Cow<'de, str>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.peek() != Some(b'{') {
            return Err(self.invalid_type(&"an object").into());
        }
        self.open()?;
        let mut first = true;
        while self.next_key(&mut first)? {
            let key = self.string()?;
            self.colon()?;
            entry(self, key)?;
        }
        Ok(())
    }

    /// Skips the next value, checking that it is JSON, and returns its text.
    pub fn skip(&mut self) -> Result<&'de str, Error> {
        if self.peek().is_none() {
            return Err(self.error("EOF while parsing a value"));
        }
        let start = self.at;
        // The arrays and objects open inside the value, a bit each (set for an object),
        // the innermost lowest: MAX_DEPTH of them fit.
        let mut open: u128 = 0;
        let mut depth = 0;
        loop {
            // At a value.
            match self.peek() {
                Some(b'{') => {
                    self.nest(&mut open, &mut depth, true)?;
                    match self.peek() {
                        Some(b'"') => {
                            self.skip_string()?;
                            self.colon()?;
                            continue;
                        }
                        Some(b'}') => {}
                        None => return Err(self.error("EOF while parsing an object")),
                        Some(_) => return Err(self.error("key must be a string")),
                    }
                }
                Some(b'[') => {
                    self.nest(&mut open, &mut depth, false)?;
                    if self.peek() != Some(b']') {
                        continue;
                    }
                }
                Some(b'"') => {
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.scan_number()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error("expected value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // After a value, or at the end of an empty array or object: close what ends
            // here, then on to the next value.
            loop {
                if depth == 0 {
                    return Ok(&self.text[start..self.at]);
                }
                let object = open & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if object {
                            if self.peek() != Some(b'"') {
                                return Err(self.error("key must be a string"));
                            }
                            self.skip_string()?;
                            self.colon()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    None => return Err(self.error("EOF while parsing a value")),
                    Some(_) if object => return Err(self.error("expected `,` or `}`")),
                    Some(_) => return Err(self.error("expected `,` or `]`")),
                }
                self.at += 1;
                open >>= 1;
                depth -= 1;
            }
        }
    }

    /// Enters an array or object that [`Reader::skip`] passes over.
    #[inline]
    fn nest(&mut self, open: &mut u128, depth: &mut usize, object: bool) -> Result<(), Error> {
        if self.depth + *depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        *open = *open << 1 | u128::from(object);
        *depth += 1;
        self.at += 1;
        Ok(())
    }

    #[inline]
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, which becomes the one read next.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&byte) = bytes.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    // Out of line: the paths that read JSON stay short.
    #[cold]
    #[inline(never)]
    fn error(&self, message: &str) -> Error {
        Error::at(self.text, self.at, message)
    }

    /// `error` placed where the reader is, if it has no place yet.
    fn place(&self, error: Error) -> Error {
        if error.line > 0 {
            return error;
        }
        self.error(&error.message)
    }

    /// The error for a value that is not what `expected` wants.
    fn invalid_type(&mut self, expected: &dyn de::Expected) -> Error {
        let found = match self.peek() {
            None => return self.error("EOF while parsing a value"),
            Some(b'{') => Unexpected::Map,
            Some(b'[') => Unexpected::Seq,
            Some(b'"') => Unexpected::Other("string"),
            Some(b't') => Unexpected::Bool(true),
            Some(b'f') => Unexpected::Bool(false),
            Some(b'n') => Unexpected::Unit,
            Some(b'-' | b'0'..=b'9') => Unexpected::Other("number"),
            Some(_) => return self.error("expected value"),
        };
        self.error(&<Error as de::Error>::invalid_type(found, expected).message)
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        if !self.bytes()[self.at..].starts_with(word) {
            return Err(self.error("expected value"));
        }
        self.at += word.len();
        Ok(())
    }

    #[inline]
    fn colon(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(())
            }
            None => Err(self.error("EOF while parsing an object")),
            Some(_) => Err(self.error("expected `:`")),
        }
    }

    /// Enters the array or object that starts at `at`.
    #[inline]
    fn open(&mut self) -> Result<(), Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.depth += 1;
        self.at += 1;
        Ok(())
    }

    /// Moves to the next key of the object being read (its quote), or past the object's
    /// end: then false.
    #[inline]
    fn next_key(&mut self, first: &mut bool) -> Result<bool, Error> {
        let found = match self.peek() {
            Some(b'}') => {
                self.at += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b'"') if *first => true,
            Some(b',') if !*first => {
                self.at += 1;
                self.peek() == Some(b'"')
            }
            None => return Err(self.error("EOF while parsing an object")),
            Some(_) if *first => false,
            Some(_) => return Err(self.error("expected `,` or `}`")),
        };
        if !found {
            return Err(self.error("key must be a string"));
        }
        *first = false;
        Ok(true)
    }

    /// Moves to the next item of the array being read, or past the array's end: then
    /// false.
    #[inline]
    fn next_item(&mut self, first: &mut bool) -> Result<bool, Error> {
        match self.peek() {
            Some(b']') => {
                self.at += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.at += 1,
            None => return Err(self.error("EOF while parsing a list")),
            Some(_) if *first => {}
            Some(_) => return Err(self.error("expected `,` or `]`")),
        }
        *first = false;
        Ok(true)
    }

    /// Reads the string that starts at `at`: borrowed from the input unless it holds an
    /// escape.
    #[inline]
    fn string(&mut self) -> Result<Cow<'de, str>, Error> {
        let start = self.at + 1;
        let stop = text_end(self.bytes(), start);
        if self.bytes().get(stop) == Some(&b'"') {
            self.at = stop + 1;
            return Ok(Cow::Borrowed(&self.text[start..stop]));
        }
        self.at = stop;
        self.unescape(start).map(Cow::Owned)
    }

    /// [`Reader::string`], passed over.
    #[inline]
    fn skip_string(&mut self) -> Result<(), Error> {
        let start = self.at + 1;
        self.at = text_end(self.bytes(), start);
        if self.bytes().get(self.at) == Some(&b'"') {
            self.at += 1;
            return Ok(());
        }
        self.unescape(start).map(drop)
    }

    /// The rest of a string that holds an escape (or is cut short), from `start`, the
    /// reader at its first stop. Out of line: the apiserver escapes few strings.
    #[cold]
    #[inline(never)]
    fn unescape(&mut self, start: usize) -> Result<String, Error> {
        let mut text = self.text[start..self.at].to_owned();
        loop {
            match self.bytes().get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(text);
                }
                Some(b'\\') => {
                    self.at += 1;
                    text.push(self.escape()?);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("EOF while parsing a string")),
            }
            let stop = text_end(self.bytes(), self.at);
            text.push_str(&self.text[self.at..stop]);
            self.at = stop;
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let Some(&byte) = self.bytes().get(self.at) else {
            return Err(self.error("EOF while parsing a string"));
        };
        let character = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.at += 1;
                return self.unicode_escape();
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.at += 1;
        Ok(character)
    }

    /// `\uXXXX`, or two of them for a surrogate pair; the reader past the `u`.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let code = match self.hex4()? {
            high @ 0xD800..=0xDBFF => {
                if !self.bytes()[self.at..].starts_with(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let Some(digits) = self.bytes().get(self.at..self.at + 4) else {
            return Err(self.error("EOF while parsing a string"));
        };
        let mut code = 0;
        for &digit in digits {
            let Some(value) = char::from(digit).to_digit(16) else {
                return Err(self.error("invalid escape"));
            };
            code = code * 16 + value;
        }
        self.at += 4;
        Ok(code)
    }

    /// Checks the number that starts at `at` and passes over it: its magnitude when it is
    /// an integer that fits in 64 bits.
    fn scan_number(&mut self) -> Result<Option<u64>, Error> {
        let bytes = self.bytes();
        if bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let mut magnitude = Some(0u64);
        match bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                while let Some(&digit @ b'0'..=b'9') = bytes.get(self.at) {
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(digit - b'0')));
                    self.at += 1;
                }
            }
            _ => return Err(self.error("invalid number")),
        }
        let integer_end = self.at;
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(magnitude.filter(|_| self.at == integer_end))
    }

    fn digits(&mut self) -> Result<(), Error> {
        let start = self.at;
        while self.bytes().get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error("invalid number"));
        }
        Ok(())
    }

    /// Reads the number that starts at `at`, as serde_json would: `-0` and integers
    /// beyond 64 bits become floats.
    fn number(&mut self) -> Result<Number, Error> {
        let start = self.at;
        let negative = self.bytes()[start] == b'-';
        match self.scan_number()? {
            Some(magnitude) if !negative => return Ok(Number::Unsigned(magnitude)),
            Some(magnitude) => {
                // Negative exactly when the magnitude fits, 1 to 2^63.
                let signed = (magnitude as i64).wrapping_neg();
                if signed < 0 {
                    return Ok(Number::Signed(signed));
                }
            }
            None => {}
        }
        match self.text[start..self.at].parse::<f64>() {
            Ok(float) if float.is_finite() => Ok(Number::Float(float)),
            _ => Err(Error::at(self.text, start, "number out of range")),
        }
    }

    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let value = match self.number()? {
            Number::Unsigned(n) => visitor.visit_u64(n),
            Number::Signed(n) => visitor.visit_i64(n),
            Number::Float(n) => visitor.visit_f64(n),
        };
        value.map_err(|e| self.place(e))
    }

    fn visit_string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let value = match self.string()? {
            Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
            Cow::Owned(text) => visitor.visit_string(text),
        };
        value.map_err(|e| self.place(e))
    }

    /// Reads the array or object at `at` through `visit`, which must read all of it.
    fn visit_items<T>(
        &mut self,
        visit: impl FnOnce(&mut Items<'_, 'de>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.open()?;
        let mut items = Items {
            reader: self,
            first: true,
            ended: false,
        };
        let value = visit(&mut items);
        let ended = items.ended;
        let value = value.map_err(|e| self.place(e))?;
        if !ended {
            return Err(self.error("expected the end of the array or object"));
        }
        Ok(value)
    }
}

/// Where the text of a string stops from `at`: its first quote, backslash or control
/// character, or the end of `bytes`.
fn text_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<16>) {
        let stops = stops(chunk);
        if stops != 0 {
            return at + stops.trailing_zeros() as usize;
        }
        at += 16;
    }
    let rest = &bytes[at..];
    at + rest
        .iter()
        .position(|&b| ends_text(b))
        .unwrap_or(rest.len())
}

/// The entries of an object or the items of an array, as serde reads them.
struct Items<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
    /// Whether the closing bracket was read.
    ended: bool,
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.reader.next_key(&mut self.first)? {
            self.ended = true;
            return Ok(None);
        }
        seed.deserialize(Key(&mut *self.reader)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.reader.colon()?;
        seed.deserialize(&mut *self.reader)
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.reader.next_item(&mut self.first)? {
            self.ended = true;
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

/// An object's key, which is always a string.
struct Key<'a, 'de>(&'a mut Reader<'de>);

impl<'de> Deserializer<'de> for Key<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.visit_string(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Numbers of every width are read alike: the visitor checks the range.
macro_rules! numbers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.peek() {
                Some(b'-' | b'0'..=b'9') => self.visit_number(visitor),
                _ => Err(self.invalid_type(&visitor)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = match self.peek() {
            Some(b'{') => return self.visit_items(|items| visitor.visit_map(items)),
            Some(b'[') => return self.visit_items(|items| visitor.visit_seq(items)),
            Some(b'"') => return self.visit_string(visitor),
            Some(b'-' | b'0'..=b'9') => return self.visit_number(visitor),
            Some(b't') => self
                .literal(b"true")
                .and_then(|()| visitor.visit_bool(true)),
            Some(b'f') => self
                .literal(b"false")
                .and_then(|()| visitor.visit_bool(false)),
            Some(b'n') => self.literal(b"null").and_then(|()| visitor.visit_unit()),
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        };
        value.map_err(|e| self.place(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b't' | b'f') => self.deserialize_any(visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'"') => self.visit_string(visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.null()? {
            return visitor.visit_none().map_err(|e| self.place(e));
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.null()? {
            return visitor.visit_unit().map_err(|e| self.place(e));
        }
        Err(self.invalid_type(&visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'[') => self.visit_items(|items| visitor.visit_seq(items)),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'{') => self.visit_items(|items| visitor.visit_map(items)),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// Only a variant without data, as a string, is read.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid_type(&visitor));
        }
        let value = match self.string()? {
            Cow::Borrowed(text) => visitor.visit_enum(BorrowedStrDeserializer::new(text)),
            Cow::Owned(text) => visitor.visit_enum(text.into_deserializer()),
        };
        value.map_err(|e| self.place(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { i128 u128 char bytes byte_buf }
}

#[cfg(test)]
mod tests;
