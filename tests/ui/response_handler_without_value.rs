use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

async fn stamp(mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let _ = resp.set_header("x-stamp", "1");
}

fn register(r: &mut Registry) {
    r.filter("stamp").respond(ResponseMode::Passthrough, pass, stamp);
}

fn main() {
    let _ = register;
}
