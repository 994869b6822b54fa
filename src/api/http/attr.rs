//! Stream attribute ids.

/// A stream attribute id, for [`Request::attr_str`](crate::Request::attr_str) and friends.
///
/// The numbers are Envoy's attribute ids; the constants name the common ones.
///
/// ```
/// use jisr::Attr;
/// assert_eq!(Attr::SOURCE_ADDRESS.0, 24);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr(pub u32);

impl Attr {
    /// `request.path` (string): path with query.
    pub const PATH: Attr = Attr(0);
    /// `request.url_path` (string): path without query.
    pub const URL_PATH: Attr = Attr(1);
    /// `request.host` (string).
    pub const HOST: Attr = Attr(2);
    /// `request.scheme` (string).
    pub const SCHEME: Attr = Attr(3);
    /// `request.method` (string).
    pub const METHOD: Attr = Attr(4);
    /// `request.referer` (string).
    pub const REFERER: Attr = Attr(6);
    /// `request.useragent` (string).
    pub const USER_AGENT: Attr = Attr(7);
    /// `request.id` (string): `x-request-id`.
    pub const REQUEST_ID: Attr = Attr(9);
    /// `request.protocol` (string), e.g. `HTTP/1.1`.
    pub const PROTOCOL: Attr = Attr(10);
    /// `request.query` (string).
    pub const QUERY: Attr = Attr(11);
    /// `request.size` (int): body bytes received so far.
    pub const REQUEST_SIZE: Attr = Attr(13);
    /// `response.code` (int).
    pub const RESPONSE_CODE: Attr = Attr(15);
    /// `source.address` (string), `ip:port`.
    pub const SOURCE_ADDRESS: Attr = Attr(24);
    /// `source.port` (int).
    pub const SOURCE_PORT: Attr = Attr(25);
    /// `destination.address` (string).
    pub const DESTINATION_ADDRESS: Attr = Attr(26);
    /// `destination.port` (int).
    pub const DESTINATION_PORT: Attr = Attr(27);
    /// `connection.id` (int).
    pub const CONNECTION_ID: Attr = Attr(28);
    /// `connection.mtls` (bool).
    pub const CONNECTION_MTLS: Attr = Attr(29);
    /// `xds.route_name` (string).
    pub const ROUTE_NAME: Attr = Attr(61);
}
