use jisr::{Registry, Request, ResponseWriter};

struct Limits {
    max: usize,
}

async fn check(lim: &Limits, mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.limit_body(lim.max);
}

fn register(r: &mut Registry) {
    // `.state(load)` is missing: the handler wants `&Limits`.
    r.filter("limits").handle(check);
}

fn main() {
    let _ = register;
}
