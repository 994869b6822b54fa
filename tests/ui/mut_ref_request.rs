use jisr::{Registry, Request, ResponseWriter};

async fn hello(req: &mut Request<'_>, _w: ResponseWriter<'_>) {
    let _ = req.set_header("x-hello", "world");
}

fn register(r: &mut Registry) {
    r.register("hello", hello);
}

fn main() {
    let _ = register;
}
